"""The API server's certificates: a CA and the serving certificate, in the data dir.

    python -m meshnet.control.apiserver.pki DATA_DIR HOST [HOST ...]

`certs.ensure_credentials` runs this as a child process, so cryptography (~8 MiB resident) is
never imported by the API server itself. Both are reused on later starts; the serving
certificate is re-issued by the same CA when a SAN in HOST... is missing or it expires within
30 days, so clients holding the CA keep working. Tests use `new_ca`/`issue_cert` directly.
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshnet.control.apiserver.certs import _write_private

CA_VALIDITY_DAYS = 3650
SERVING_VALIDITY_DAYS = 825  # the CA/Browser forum ceiling; clients like curl accept it


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


def ensure_pki(data_dir: Path, hosts: list[str]) -> None:
    ca_cert, ca_key = _ensure_ca(data_dir)
    _ensure_serving(data_dir, ca_cert, ca_key, hosts)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m meshnet.control.apiserver.pki DATA_DIR HOST [HOST ...]",
              file=sys.stderr)
        return 2
    try:
        ensure_pki(Path(argv[0]), argv[1:])
    except (OSError, ValueError) as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
