"""meshnet-apiserver's command line: flags, --help, and clear errors for bad values."""

import subprocess
import sys
from pathlib import Path

import pytest

from meshnet.control.apiserver.main import parse_host_port

BIN = Path(sys.executable).parent

HOST_PORTS = [
    ("host and port", "127.0.0.1:6443", ("127.0.0.1", 6443)),
    ("port only", ":7443", ("0.0.0.0", 7443)),
    ("host only", "10.0.0.1", ("10.0.0.1", 6443)),
    ("bracketed IPv6", "[::1]:6443", ("::1", 6443)),
    ("port zero picks a free port", "127.0.0.1:0", ("127.0.0.1", 0)),
]


@pytest.mark.parametrize("desc,text,want", HOST_PORTS, ids=[c[0] for c in HOST_PORTS])
def test_parse_host_port(desc, text, want):
    assert parse_host_port(text, 6443) == want


def test_help_lists_the_flags():
    out = subprocess.run([BIN / "meshnet-apiserver", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--data-dir", "--listen", "--store", "--service-cidr", "--node-port-range",
                 "--lb-pool", "--cluster-domain", "--advertise-address", "--etcd-cafile",
                 "--etcd-certfile", "--etcd-keyfile", "--restore", "--bump-revision"):
        assert flag in out.stdout


BAD = [
    ("bad port", ["--listen", "127.0.0.1:99999"], "port must be a number from 0 to 65535"),
    ("bad service cidr", ["--service-cidr", "10.96.0.0/33"], "10.96.0.0/33"),
    ("bad node port range", ["--node-port-range", "40000-30000"], "--node-port-range"),
    ("bad lb pool", ["--lb-pool", "bogus"], "--lb-pool 'bogus'"),
    ("etcd unreachable", ["--store", "etcd://127.0.0.1:1"], "is etcd running"),
    ("store scheme", ["--store", "mysql://127.0.0.1:1"], "unsupported scheme"),
    ("etcd TLS files without etcds", ["--etcd-cafile", "/ca.crt"], "not etcds://"),
    ("a client certificate without its key",
     ["--store", "etcds://127.0.0.1:1", "--etcd-certfile", "/c.crt"], "go together"),
    ("a negative revision bump", ["--restore", "x", "--bump-revision", "-1"],
     "--bump-revision -1: must be >= 0"),
    ("a restore file that is not there", ["--restore", "/nonexistent/backup"],
     "/nonexistent/backup: cannot read it: No such file or directory"),
]


@pytest.mark.parametrize("desc,args,message", BAD, ids=[c[0] for c in BAD])
def test_bad_flags_fail_clearly(tmp_path, desc, args, message):
    out = subprocess.run([BIN / "meshnet-apiserver", "--data-dir", str(tmp_path),
                          "--listen", "127.0.0.1:0", *args], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
