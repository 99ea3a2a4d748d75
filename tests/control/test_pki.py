"""The API server's credentials: made once, reused, the serving certificate re-issued by the same
CA when a SAN is missing, a broken CA reported with its directory, and cryptography kept out of
the server's own process (pki.py runs as a child)."""

from __future__ import annotations

import ssl

import pytest
from cryptography import x509

from meshnet.control.apiserver.certs import PKIError, ensure_credentials

from conftest import python_says

ARGS = dict(listen_host="127.0.0.1", listen_port=6443, advertise=[], cluster_domain="cluster.local",
            service_ip="10.96.0.1")


def sans(path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in ext.get_values_for_type(x509.IPAddress)] + \
        ext.get_values_for_type(x509.DNSName)


def test_made_once_then_reused_and_reissued_for_a_new_address(tmp_path):
    creds = ensure_credentials(tmp_path, **ARGS)
    ca, serving = creds.ca_cert.read_bytes(), creds.serving_cert.read_bytes()
    assert {"127.0.0.1", "10.96.0.1", "kubernetes.default.svc.cluster.local"} <= \
        set(sans(creds.serving_cert))
    ctx = ssl.create_default_context(cafile=str(creds.ca_cert))  # the chain verifies
    ctx.load_cert_chain(creds.serving_cert, creds.serving_key)

    again = ensure_credentials(tmp_path, **ARGS)
    assert again.serving_cert.read_bytes() == serving and again.tokens == creds.tokens

    moved = ensure_credentials(tmp_path, **{**ARGS, "advertise": ["192.0.2.10"]})
    assert moved.ca_cert.read_bytes() == ca  # clients holding the CA keep working
    assert moved.serving_cert.read_bytes() != serving
    assert "192.0.2.10" in sans(moved.serving_cert)


def test_a_broken_ca_is_reported_with_its_directory(tmp_path):
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    (tmp_path / "ca.key").write_text("not a key\n")
    with pytest.raises(PKIError, match=str(tmp_path) + ": cannot make the CA"):
        ensure_credentials(tmp_path, **ARGS)


def test_the_server_process_never_imports_cryptography(tmp_path):
    code = ("import sys; from pathlib import Path; "
            "from meshnet.control.apiserver.certs import ensure_credentials; "
            f"ensure_credentials(Path({str(tmp_path)!r}), **{ARGS!r}); "
            "print('cryptography' in sys.modules)")
    assert python_says(code) == ["False"]
    assert (tmp_path / "apiserver.crt").exists()
