"""TLS: certificates from `kubernetes.io/tls` Secrets, chosen by SNI.

Theory of operation
-------------------
`compile_certificates` (pure) maps each host named in the `spec.tls` of a served Ingress to
the Secret holding its certificate -- oldest Ingress first, like routes -- and checks the
Secret: present, of type kubernetes.io/tls, PEM that parses, a key that matches the
certificate. A Secret that fails is left out (its hosts get the default certificate) and
becomes a Problem, recorded as an Event.

`select_certificate` (pure) picks for an SNI name: exact host, then a `*.foo.com` entry
covering exactly one label, else None (the default certificate).

`TLSStore` is the I/O shell: one SSLContext per distinct certificate, built once and kept
while the certificate is in use; the listener's context has an `sni_callback` that switches
the connection to the chosen one. `update()` swaps the table in one assignment, so a renewed
Secret is served to the next handshake without a restart; handshakes in flight keep theirs.

cryptography (~9 MiB resident) is imported only where a certificate must be parsed or made:
`check_secret` on the first TLS Secret, and the default certificate is made in a child process
(`default_certificate`), so a controller serving plain HTTP never holds it.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import os
import ssl
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterable, Mapping

from meshnet.ingress.routes import Problem
from meshnet.ingress.views import TLS_SECRET_TYPE, IngressView, SecretView

log = logging.getLogger("meshnet.ingress.certs")

DEFAULT_CERT_DAYS = 3650


@dataclass(frozen=True)
class CertTable:
    exact: tuple[tuple[str, str], ...] = ()  # host -> "ns/secret"
    wildcard: tuple[tuple[str, str], ...] = ()  # ".foo.com" -> "ns/secret"
    pems: tuple[tuple[str, bytes, bytes], ...] = ()  # ("ns/secret", cert, key), valid only


def check_secret(secret: SecretView | None, key: str) -> str:
    """'' if the Secret holds a usable certificate, else what is wrong with it."""
    if secret is None:
        return f'secret "{key}" not found'
    if secret.type != TLS_SECRET_TYPE:
        return f'secret "{key}" is of type {secret.type!r}, not {TLS_SECRET_TYPE}'
    if secret.problem:
        return f'secret "{key}": {secret.problem}'
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(secret.cert)
        private = serialization.load_pem_private_key(secret.key, password=None)
    except (ValueError, TypeError) as exc:
        return f'secret "{key}": tls.crt/tls.key is not a PEM certificate and key: {exc}'
    if certs[0].public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) != \
            private.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo):
        return f'secret "{key}": tls.key does not belong to the certificate in tls.crt'
    return ""


def compile_certificates(ingresses: Iterable[IngressView], secrets: Mapping[str, SecretView]
                         ) -> tuple[CertTable, tuple[Problem, ...]]:
    """`ingresses`: the served ones, oldest first."""
    exact: dict[str, str] = {}
    wildcard: dict[str, str] = {}
    pems: dict[str, tuple[bytes, bytes]] = {}
    problems: list[Problem] = []
    checked: dict[str, str] = {}
    for ing in ingresses:
        for tls in ing.tls:
            if not tls.secret_name:
                continue
            key = f"{ing.namespace}/{tls.secret_name}"
            if key not in checked:
                checked[key] = check_secret(secrets.get(key), key)
            message = checked[key]
            if message:
                problems.append(Problem("Ingress", ing.namespace, ing.name, ing.uid,
                                        "InvalidCertificate",
                                        f"{message}; serving the default certificate for "
                                        f"{', '.join(tls.hosts) or 'its hosts'}"))
                secret = secrets.get(key)
                if secret is not None:
                    problems.append(Problem("Secret", secret.namespace, secret.name, secret.uid,
                                            "InvalidCertificate", message))
                continue
            pems[key] = (secrets[key].cert, secrets[key].key)
            for host in tls.hosts:
                table = wildcard if host.startswith("*.") else exact
                table.setdefault(host[1:] if host.startswith("*.") else host, key)
    return (CertTable(tuple(sorted(exact.items())), tuple(sorted(wildcard.items())),
                      tuple(sorted((k, c, p) for k, (c, p) in pems.items()))),
            tuple(dict.fromkeys(problems)))


def select_certificate(table: CertTable, server_name: str | None) -> str | None:
    if not server_name:
        return None
    name = server_name.lower().rstrip(".")
    for host, key in table.exact:
        if host == name:
            return key
    dot = name.find(".")
    if dot > 0:
        for suffix, key in table.wildcard:
            if suffix == name[dot:]:
                return key
    return None


def generate_self_signed(common_name: str = "meshnet-ingress default certificate"
                         ) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM): the certificate for SNI names no Secret covers, as ingress-nginx's
    "Kubernetes Ingress Controller Fake Certificate"."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=DEFAULT_CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("ingress.local")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


async def default_certificate() -> tuple[bytes, bytes]:
    """`generate_self_signed()`, run by a child interpreter (~0.15 s, started early by the
    caller) so that this process never imports cryptography for it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from meshnet.ingress.certs import generate_self_signed"
        " as g; c, k = g(); sys.stdout.buffer.write(c + b'\\0' + k)",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0 or out.count(b"\0") != 1:
        raise OSError(f"making the default certificate failed: "
                      f"{err.decode(errors='replace').strip()[-500:] or proc.returncode}")
    cert, key = out.split(b"\0")
    return cert, key


def write_pem_pair(directory: str, cert: bytes, key: bytes) -> tuple[str, str]:
    """tls.crt and tls.key in `directory` (a private one: mode 0700), readable by the owner
    alone; returns their paths."""
    os.chmod(directory, 0o700)
    paths = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
    for path, data in zip(paths, (cert, key)):
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
    return paths


def read_pem_pair(directory: str) -> tuple[bytes, bytes]:
    """(cert, key) from the tls.crt and tls.key write_pem_pair put in `directory`."""
    with open(os.path.join(directory, "tls.crt"), "rb") as cert, \
            open(os.path.join(directory, "tls.key"), "rb") as key:
        return cert.read(), key.read()


def server_context(cert: bytes, key: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    # The ssl module loads PEM from files only: a private directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="meshnet-ingress-") as tmp:
        ctx.load_cert_chain(*write_pem_pair(tmp, cert, key))
    return ctx


class TLSStore:
    def __init__(self, default_cert: bytes, default_key: bytes):
        self.table = CertTable()
        self.contexts: dict[str, ssl.SSLContext] = {}  # "ns/secret" -> context
        self._by_digest: dict[bytes, ssl.SSLContext] = {}
        self.listener_context = server_context(default_cert, default_key)
        self.listener_context.sni_callback = self._sni
        self._default_digest = b""

    def __repr__(self) -> str:
        return f"<TLSStore certificates={len(self.contexts)} hosts={len(self.table.exact)}>"

    def set_default(self, cert: bytes, key: bytes) -> None:
        """Serve this as the default certificate (--default-ssl-certificate's Secret): the
        listener's own context keeps the generated one and SNI switches to this."""
        digest = hashlib.sha256(cert + b"\0" + key).digest()
        if digest != self._default_digest:
            ctx = server_context(cert, key)
            self._default_digest = digest
            self.contexts[""] = ctx

    def update(self, table: CertTable) -> None:
        contexts: dict[str, ssl.SSLContext] = {}
        by_digest: dict[bytes, ssl.SSLContext] = {}
        for key, cert, pkey in table.pems:
            digest = hashlib.sha256(cert + b"\0" + pkey).digest()
            ctx = self._by_digest.get(digest) or by_digest.get(digest)
            if ctx is None:
                try:
                    ctx = server_context(cert, pkey)
                except (ssl.SSLError, OSError) as exc:  # checked already; belt and braces
                    log.warning("certificate %s not loadable: %s", key, exc)
                    continue
            contexts[key] = by_digest[digest] = ctx
        if "" in self.contexts:
            contexts[""] = self.contexts[""]
        self.contexts, self._by_digest, self.table = contexts, by_digest, table

    def _sni(self, sslobj, server_name, _ctx):
        # Also called without SNI (server_name None): the default then.
        key = select_certificate(self.table, server_name)
        ctx = self.contexts.get(key) if key else self.contexts.get("")
        if ctx is not None:
            sslobj.context = ctx
        return None
