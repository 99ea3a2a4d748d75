"""First-start credentials: a CA, the serving certificate, the admin token and kubeconfig.

Everything lives in the data dir and is reused on later starts. The serving certificate is
re-issued (by the same CA) when a required SAN is missing, e.g. after `--listen` or
`--advertise-address` changed, so clients holding the CA keep working.
Files: ca.crt, ca.key, apiserver.crt, apiserver.key, tokens.csv (kube's static token file
format: token,user,uid,"groups"), admin.kubeconfig.

The certificates are made by `pki.py` in a child process: cryptography costs ~8 MiB of
resident memory in whatever process imports it, and the API server needs it only for the files.
"""

from __future__ import annotations

import csv
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ADMIN_USER = "admin"
MASTERS_GROUP = "system:masters"


class PKIError(ValueError):
    """The certificates could not be made or read (the message says which directory)."""


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


def serving_hosts(listen_host: str, advertise: list[str], cluster_domain: str,
                  service_ip: str) -> list[str]:
    hosts = ["127.0.0.1", "localhost", "::1", service_ip, "kubernetes", "kubernetes.default",
             "kubernetes.default.svc", f"kubernetes.default.svc.{cluster_domain}"]
    if listen_host not in ("", "0.0.0.0", "::"):
        hosts.append(listen_host)
    return hosts + list(advertise)


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
    hosts = serving_hosts(listen_host, advertise, cluster_domain, service_ip)
    out = subprocess.run([sys.executable, "-m", "meshnet.control.apiserver.pki", str(data_dir),
                          *hosts], capture_output=True, text=True)
    if out.returncode != 0:
        raise PKIError(f"{data_dir}: cannot make the CA and serving certificate: "
                       f"{(out.stderr.strip().splitlines() or ['?'])[-1]}")
    tokens, masters = _ensure_tokens(data_dir)
    host = listen_host if listen_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    kubeconfig = data_dir / "admin.kubeconfig"
    write_kubeconfig(kubeconfig, f"https://{host}:{listen_port}",
                     (data_dir / "ca.crt").read_bytes(), admin_token(tokens))
    return Credentials(data_dir / "ca.crt", data_dir / "apiserver.crt",
                       data_dir / "apiserver.key", tokens, kubeconfig, masters)
