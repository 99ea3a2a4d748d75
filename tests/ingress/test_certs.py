"""compile_certificates and select_certificate: SNI choice and broken Secrets, no sockets."""

from __future__ import annotations

import pytest

from meshnet.ingress.certs import compile_certificates, select_certificate
from meshnet.ingress.views import view_ingress, view_secret

from fakes import ingress, path
from pki import CA, tls_secret

ca = CA()
GOOD = tls_secret("good", *ca.issue("a.com"))
WILD = tls_secret("wild", *ca.issue("*.w.com"))
OTHER_KEY = tls_secret("mismatch", ca.issue("m.com")[0], ca.issue("m.com")[1])
GARBAGE = tls_secret("garbage", b"nope", b"nope")
OPAQUE = {**GOOD, "type": "Opaque", "metadata": {"name": "opaque", "namespace": "default"}}
SECRETS = {f"default/{s['metadata']['name']}": view_secret(s)
           for s in (GOOD, WILD, OTHER_KEY, GARBAGE, OPAQUE)}


def compile_(tls):
    ing = view_ingress(ingress("i", {"a.com": [path("/", "web")]}, tls=tls))
    return compile_certificates([ing], SECRETS)


SNI_CASES = [
    # (description, SNI name, expected secret or None for the default certificate)
    ("exact host", "a.com", "default/good"),
    ("exact host, any case, trailing dot", "A.Com.", "default/good"),
    ("wildcard covers one label", "x.w.com", "default/wild"),
    ("wildcard does not cover two labels", "y.x.w.com", None),
    ("wildcard does not cover the bare domain", "w.com", None),
    ("exact beats wildcard", "e.w.com", "default/good"),
    ("unknown name: default", "b.com", None),
    ("no SNI: default", None, None),
]


@pytest.mark.parametrize("desc,sni,expected", SNI_CASES, ids=[c[0] for c in SNI_CASES])
def test_select_certificate(desc, sni, expected):
    table, problems = compile_([(["a.com", "e.w.com"], "good"), (["*.w.com"], "wild")])
    assert problems == ()
    assert select_certificate(table, sni) == expected, desc


BROKEN_CASES = [
    ("missing Secret", "absent", 'secret "default/absent" not found'),
    ("not kubernetes.io/tls", "opaque", "is of type 'Opaque'"),
    ("not PEM", "garbage", "not a PEM certificate"),
    ("key of another certificate", "mismatch", "does not belong to the certificate"),
]


@pytest.mark.parametrize("desc,secret,message", BROKEN_CASES, ids=[c[0] for c in BROKEN_CASES])
def test_broken_secret_falls_back_with_a_problem(desc, secret, message):
    table, problems = compile_([(["a.com"], secret)])
    assert select_certificate(table, "a.com") is None, desc
    assert problems[0].kind == "Ingress" and problems[0].reason == "InvalidCertificate"
    assert message in problems[0].message and "default certificate" in problems[0].message
    # The Secret itself gets the Event too when it exists.
    assert [p.kind for p in problems] == (["Ingress"] if secret == "absent"
                                          else ["Ingress", "Secret"])
