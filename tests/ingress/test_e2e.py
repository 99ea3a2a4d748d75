"""meshnet-ingress end to end: a real API server, the real daemon, real backends, curl."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import urllib.request

import pytest

from e2e import INGRESS_HOST, POD_IPS, Cluster, IngressProcess, Pods
from fakes import endpoints, ingress, path, service
from pki import CA, tls_secret


@pytest.fixture(scope="module")
def cluster(apiserver, tmp_path_factory):
    pods = Pods().start()
    proc = IngressProcess(apiserver.kubeconfig,
                          tmp_path_factory.mktemp("ingress") / "ingress.log",
                          ["--publish-address", "127.0.0.3"]).start()
    c = Cluster(apiserver.kubeconfig, proc, pods)
    # Services: web (all 10 pods), one (pod0), two (pod1), empty (no ready endpoints)
    for name, ips in (("web", POD_IPS), ("one", POD_IPS[:1]), ("two", POD_IPS[1:2]),
                      ("empty", [])):
        c.apply(service(name, {"http": 80}))
        c.apply(endpoints(name, ips, {"http": pods.port}))
    try:
        yield c
    finally:
        proc.stop()
        pods.stop()


def backend_of(c: Cluster, host: str, p: str = "/", **kw) -> str:
    code, body = c.status_of(host, p, **kw)
    return json.loads(body)["backend"] if code == 200 else str(code)


def test_creates_its_ingress_class_and_serves_readiness(cluster):
    ic = cluster.get("IngressClass", "meshnet", None)
    assert ic["spec"]["controller"] == "meshnet.io/ingress-controller"
    ready = cluster.wait_for(lambda: urllib.request.urlopen(
        f"http://{INGRESS_HOST}:{cluster.ingress.status_port}/ready").status == 200)
    assert ready


def test_path_types_and_the_mixed_case(cluster):
    cluster.apply(ingress("paths", {"paths.test": [
        path("/", "one"), path("/exact", "two", path_type="Exact"),
        path("/mixed", "two", path_type="Exact"), path("/mixed", "one"),
        path("/impl", "two", path_type="ImplementationSpecific")]}))
    cluster.wait_for(lambda: backend_of(cluster, "paths.test", "/exact") == "pod1",
                     what="paths Ingress served")
    cases = [("/", "pod0"), ("/exact", "pod1"), ("/exact/", "pod0"), ("/mixed", "pod1"),
             ("/mixed/x", "pod0"), ("/impl/a", "pod1"), ("/implx", "pod0"),
             ("/exact?q=1", "pod1")]
    assert [(p, backend_of(cluster, "paths.test", p)) for p, _ in cases] == cases


def test_wildcard_hosts_defaults_404_and_503(cluster):
    cluster.apply(ingress("wild", {"*.wild.test": [path("/", "one")],
                                   "exact.wild.test": [path("/", "two")],
                                   "down.test": [path("/", "empty")],
                                   "dflt.test": [path("/only", "one")]},
                          default=("two", 80)))
    cluster.wait_for(lambda: backend_of(cluster, "exact.wild.test") == "pod1", what="wild")
    assert backend_of(cluster, "a.wild.test") == "pod0"
    assert backend_of(cluster, "A.Wild.Test.") == "pod0"
    assert backend_of(cluster, "b.a.wild.test") == "404"
    assert backend_of(cluster, "dflt.test", "/elsewhere") == "pod1"  # per-Ingress default
    code, body = cluster.status_of("nobody.test")
    assert code == 404 and b"404 Not Found" in body
    code, body = cluster.status_of("down.test")
    assert code == 503 and b"503 Service Unavailable" in body


def test_status_written_for_served_ingresses_only(cluster):
    cluster.apply(ingress("mine", {"mine.test": [path("/", "one")]}))
    cluster.apply(ingress("theirs", {"theirs.test": [path("/", "one")]}, class_name="nginx"))
    cluster.wait_for(lambda: (cluster.get("Ingress", "mine").get("status") or {})
                     .get("loadBalancer", {}).get("ingress") == [{"ip": "127.0.0.3"}],
                     what="status of mine")
    assert backend_of(cluster, "theirs.test") == "404"
    assert not (cluster.get("Ingress", "theirs").get("status") or {}) \
        .get("loadBalancer", {}).get("ingress")


def test_new_connection_requests_reach_all_ten_pods(cluster):
    cluster.apply(ingress("spread", {"spread.test": [path("/", "web")]}))
    cluster.wait_for(lambda: backend_of(cluster, "spread.test").startswith("pod"), what="spread")
    seen = [backend_of(cluster, "spread.test") for _ in range(100)]  # 100 curl processes
    assert sorted(set(seen)) == sorted(f"pod{i}" for i in range(10))
    assert all(seen.count(f"pod{i}") == 10 for i in range(10))  # round robin: exactly even


def test_tls_by_sni_with_two_hosts_on_one_address_and_308(cluster, tmp_path):
    ca = CA()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem)
    cluster.apply(tls_secret("cert-a", *ca.issue("a.tls.test")))
    cluster.apply(tls_secret("cert-b", *ca.issue("b.tls.test")))
    cluster.apply(ingress("tls", {"a.tls.test": [path("/", "one")],
                                  "b.tls.test": [path("/", "two")]},
                          tls=[(["a.tls.test"], "cert-a"), (["b.tls.test"], "cert-b")]))

    def https(host):
        return cluster.status_of(host, https=True, args=["--cacert", str(ca_file)])

    cluster.wait_for(lambda: https("a.tls.test")[0] == 200, what="TLS for a.tls.test")
    assert json.loads(https("a.tls.test")[1])["backend"] == "pod0"
    assert json.loads(https("b.tls.test")[1])["backend"] == "pod1"
    seen = json.loads(https("a.tls.test")[1])["headers"]
    assert seen["X-Forwarded-Proto"] == "https"
    # The certificate is the one for the SNI name: curl verified it against the CA and name.
    r = cluster.curl("a.tls.test", https=True, args=["--cacert", str(ca_file), "-v", "-o",
                                                      "/dev/null"])
    assert b"subject: CN=a.tls.test" in r.stderr
    # Unknown SNI: the generated default certificate, which the CA does not vouch for.
    r = cluster.curl("other.tls.test", https=True, args=["--cacert", str(ca_file)])
    assert r.returncode == 60  # peer certificate cannot be authenticated
    r = cluster.curl("other.tls.test", https=True, args=["-k", "-v", "-o", "/dev/null"])
    assert b"meshnet-ingress default certificate" in r.stderr
    # HTTP to a TLS host: 308 to https, path and query kept.
    r = cluster.curl("a.tls.test", "/p?q=1", args=["-o", "/dev/null", "-w",
                                                   "%{http_code} %{redirect_url}"])
    assert r.stdout.decode() == \
        f"308 https://a.tls.test:{cluster.ingress.https_port}/p?q=1"
    # Following it with curl -L lands on the backend over TLS.
    code, body = cluster.status_of("a.tls.test", "/p?q=1", args=[
        "-L", "--cacert", str(ca_file), "--resolve",
        f"a.tls.test:{cluster.ingress.https_port}:{INGRESS_HOST}"])
    assert code == 200 and json.loads(body)["path_qs"] == "/p?q=1"

    # Secret renewed: served to the next handshake, no restart.
    cluster.apply(tls_secret("cert-a", *ca.issue("a.tls.test", cn="renewed.a.tls.test")))
    cluster.wait_for(lambda: b"CN=renewed.a.tls.test" in cluster.curl(
        "a.tls.test", https=True, args=["--cacert", str(ca_file), "-v", "-o", "/dev/null"]
    ).stderr, what="renewed certificate")
    # Broken Secret: the default certificate, and an Event on the Ingress.
    broken = tls_secret("cert-b", b"not a certificate", b"nor a key")
    cluster.apply(broken)
    cluster.wait_for(lambda: b"meshnet-ingress default certificate" in cluster.curl(
        "b.tls.test", https=True, args=["-k", "-v", "-o", "/dev/null"]).stderr,
        what="fallback to the default certificate")
    events = cluster.wait_for(lambda: [e for e in cluster.list("Event")
                                       if e["reason"] == "InvalidCertificate"
                                       and e["involvedObject"]["name"] == "tls"],
                              what="InvalidCertificate event")
    assert "cert-b" in events[0]["message"]


def test_ssl_redirect_annotation_turns_it_off(cluster):
    cluster.apply(ingress("noredir", {"plain.tls.test": [path("/", "one")]},
                          tls=[(["plain.tls.test"], "cert-a")],
                          annotations={"meshnet.io/ssl-redirect": "false"}))
    cluster.wait_for(lambda: backend_of(cluster, "plain.tls.test") == "pod0", what="noredir")


def test_configuration_changes_under_load_fail_no_request(cluster):
    cluster.apply(ingress("load", {"load.test": [path("/", "web")]}))
    cluster.wait_for(lambda: backend_of(cluster, "load.test").startswith("pod"), what="load")
    stop = threading.Event()
    results: list[int] = []
    url = f"http://{INGRESS_HOST}:{cluster.ingress.http_port}/"

    def client():
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while not stop.is_set():
            req = urllib.request.Request(url, headers={"Host": "load.test"})
            try:
                with opener.open(req, timeout=10) as r:
                    r.read()
                    results.append(r.status)
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                results.append(getattr(exc, "code", -1))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client) for _ in range(8)]
        for i in range(20):  # Ingresses and Endpoints change while requests flow
            cluster.apply(ingress(f"churn{i % 4}", {f"churn{i}.test": [path("/", "one")]}))
            cluster.apply(endpoints("web", POD_IPS[: 2 + i % 8], {"http": cluster.pods.port}))
            cluster.apply(ingress("load", {"load.test": [path("/", "web"),
                                                         path(f"/v{i}", "two")]}))
        stop.set()
        for f in futures:
            f.result()
    assert len(results) > 100
    assert set(results) == {200}, {s: results.count(s) for s in set(results)}
