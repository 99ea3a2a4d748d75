"""First-start credentials: a CA, the serving certificate, the admin token and kubeconfig.

Everything lives in the data dir and is reused on later starts. The serving certificate is
re-issued (by the same CA) when a required SAN is missing, e.g. after `--listen` or
`--advertise-address` changed, so clients holding the CA keep working.
Files: ca.crt, ca.key, apiserver.crt, apiserver.key, tokens.csv (kube's static token file
format: token,user,uid,"groups"), admin.kubeconfig.
"""

from __future__ import annotations

import csv
import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY_DAYS = 3650
SERVING_VALIDITY_DAYS = 825  # the CA/Browser forum ceiling; clients like curl accept it
ADMIN_USER = "admin"
MASTERS_GROUP = "system:masters"


@dataclass(frozen=True)
class Credentials:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    tokens: dict[str, str]  # token -> user name
    kubeconfig: Path
    masters: frozenset[str] = frozenset()  # tokens of users in system:masters (admins)

    def __repr__(self) -> str:
        return f"<Credentials {self.serving_cert} users={sorted(set(self.tokens.values()))}>"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_ca(common_name: str = "meshnet-ca"):
    """A self-signed CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=CA_VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())), key


def _ensure_ca(data_dir: Path):
    cert_path, key_path = data_dir / "ca.crt", data_dir / "ca.key"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        return cert, key
    cert, key = new_ca()
    write_cert(cert_path, key_path, cert, key)
    return cert, key


def _sans(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _has_sans(cert_path: Path, wanted: list[x509.GeneralName]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    remaining = cert.not_valid_after_utc - _now()
    return all(n in present for n in wanted) and remaining > datetime.timedelta(days=30)


def serving_hosts(listen_host: str, advertise: list[str], cluster_domain: str,
                  service_ip: str) -> list[str]:
    hosts = ["127.0.0.1", "localhost", "::1", service_ip, "kubernetes", "kubernetes.default",
             "kubernetes.default.svc", f"kubernetes.default.svc.{cluster_domain}"]
    if listen_host not in ("", "0.0.0.0", "::"):
        hosts.append(listen_host)
    return hosts + list(advertise)


def issue_cert(ca_cert, ca_key, common_name: str, hosts: list[str], *, server: bool = True,
               client: bool = False):
    """A certificate signed by the CA for `hosts` (its SANs) and its key; `server` and
    `client` are its extended key usages (etcd wants both on a member's certificate when
    clients must present one: its own gateway dials it with that certificate)."""
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
        ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(_now() - datetime.timedelta(minutes=5))
               .not_valid_after(_now() + datetime.timedelta(days=SERVING_VALIDITY_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(hosts)),
                                        critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def write_cert(cert_path: Path, key_path: Path, cert, key) -> None:
    """PEM files: the key readable by its owner only."""
    _write_private(key_path, _key_pem(key))
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _ensure_serving(data_dir: Path, ca_cert, ca_key, hosts: list[str]) -> None:
    cert_path, key_path = data_dir / "apiserver.crt", data_dir / "apiserver.key"
    if key_path.exists() and _has_sans(cert_path, _sans(hosts)):
        return
    write_cert(cert_path, key_path, *issue_cert(ca_cert, ca_key, "kube-apiserver", hosts))


def _ensure_tokens(data_dir: Path) -> tuple[dict[str, str], frozenset[str]]:
    """(token -> user, the tokens whose user is in the group system:masters)."""
    path = data_dir / "tokens.csv"
    if not path.exists():
        token = secrets.token_urlsafe(32)
        _write_private(path, f'{token},{ADMIN_USER},1,"{MASTERS_GROUP}"\n'.encode())
    tokens, masters = {}, set()
    # kube's --token-auth-file: token,user,uid,"group1,group2" (the groups quoted as CSV).
    for fields in csv.reader(path.read_text().splitlines()):
        if len(fields) >= 2 and fields[0].strip() and not fields[0].startswith("#"):
            token = fields[0].strip()
            tokens[token] = fields[1].strip()
            if len(fields) >= 4 and MASTERS_GROUP in (g.strip() for g in fields[3].split(",")):
                masters.add(token)
    return tokens, frozenset(masters)


def admin_token(tokens: dict[str, str]) -> str:
    return next(t for t, user in tokens.items() if user == ADMIN_USER)


def write_kubeconfig(path: Path, server: str, ca_pem: bytes, token: str,
                     cluster: str = "meshnet") -> None:
    """A standard kubeconfig that kubectl and the official clients read unchanged."""
    import base64

    user = f"{cluster}-admin"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user,
                                                   "namespace": "default"}}],
        "current-context": cluster,
        "preferences": {},
    }
    _write_private(path, yaml.safe_dump(config, sort_keys=False).encode())


def ensure_credentials(data_dir: Path, *, listen_host: str, listen_port: int,
                       advertise: list[str], cluster_domain: str,
                       service_ip: str) -> Credentials:
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    ca_cert, ca_key = _ensure_ca(data_dir)
    _ensure_serving(data_dir, ca_cert, ca_key,
                    serving_hosts(listen_host, advertise, cluster_domain, service_ip))
    tokens, masters = _ensure_tokens(data_dir)
    host = listen_host if listen_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    kubeconfig = data_dir / "admin.kubeconfig"
    write_kubeconfig(kubeconfig, f"https://{host}:{listen_port}",
                     (data_dir / "ca.crt").read_bytes(), admin_token(tokens))
    return Credentials(data_dir / "ca.crt", data_dir / "apiserver.crt",
                       data_dir / "apiserver.key", tokens, kubeconfig, masters)
