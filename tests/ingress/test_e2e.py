"""meshnet-ingress end to end: a real API server, the real daemon, real backends, curl."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import aiohttp
import pytest

from e2e import INGRESS_HOST, POD_IPS, Cluster, IngressProcess, serving, start_wrk, wrk_result
from fakes import endpoints, ingress, path, service
from pki import CA, tls_secret

GIB = 1 << 30
BIG_TIMEOUT_S = 30  # acceptance: a 1 GiB transfer in under 30 s
LOAD_SECONDS = 5


@pytest.fixture(scope="module")
def cluster(apiserver, tmp_path_factory):
    with serving(apiserver.kubeconfig, IngressProcess(
            apiserver.kubeconfig, tmp_path_factory.mktemp("ingress") / "ingress.log",
            ["--publish-address", "127.0.0.3"])) as c:
        # Services: web (all 10 pods), one (pod0), two (pod1), empty (no ready endpoints)
        for name, ips in (("web", POD_IPS), ("one", POD_IPS[:1]), ("two", POD_IPS[1:2]),
                          ("empty", [])):
            c.apply(service(name, {"http": 80}))
            c.apply(endpoints(name, ips, {"http": c.pods.port}))
        yield c


def backend_of(c: Cluster, host: str, p: str = "/", **kw) -> str:
    code, body = c.status_of(host, p, **kw)
    return json.loads(body)["backend"] if code == 200 else str(code)


def test_creates_its_ingress_class_and_serves_readiness(cluster):
    ic = cluster.get("IngressClass", "meshnet", None)
    assert ic["spec"]["controller"] == "meshnet.io/ingress-controller"

    def ready() -> bool:  # 503 until the first sync: urlopen raises for it
        try:
            return urllib.request.urlopen(
                f"http://{INGRESS_HOST}:{cluster.ingress.status_port}/ready").status == 200
        except urllib.error.HTTPError as exc:
            return exc.code == 200

    assert cluster.wait_for(ready, what="/ready answering 200")
    # Plain HTTP so far, the default certificate made by a child: no cryptography in here
    # (its Rust extension would be mapped).
    maps = open(f"/proc/{cluster.ingress.proc.pid}/maps").read()
    assert "cryptography" not in maps and "_rust" not in maps


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
    # Fixed, then broken again: the same Event counts 2, no second Event.
    cluster.apply(tls_secret("cert-b", *ca.issue("b.tls.test")))
    cluster.wait_for(lambda: b"CN=b.tls.test" in cluster.curl(
        "b.tls.test", https=True, args=["--cacert", str(ca_file), "-v", "-o", "/dev/null"]
    ).stderr, what="repaired certificate")
    cluster.apply(broken)
    bumped = cluster.wait_for(lambda: [e for e in cluster.list("Event")
                                       if e["reason"] == "InvalidCertificate"
                                       and e["involvedObject"]["name"] == "tls"
                                       and e.get("count") == 2], what="event count 2")
    assert len([e for e in cluster.list("Event") if e["reason"] == "InvalidCertificate"
                and e["involvedObject"]["name"] == "tls"]) == 1
    assert bumped[0]["metadata"]["name"] == events[0]["metadata"]["name"]


def test_ssl_redirect_annotation_turns_it_off(cluster):
    cluster.apply(ingress("noredir", {"plain.tls.test": [path("/", "one")]},
                          tls=[(["plain.tls.test"], "cert-a")],
                          annotations={"meshnet.io/ssl-redirect": "false"}))
    cluster.wait_for(lambda: backend_of(cluster, "plain.tls.test") == "pod0", what="noredir")


async def test_websocket_echo_through_the_daemon_survives_reconfiguration(cluster):
    cluster.apply(ingress("ws", {"ws.test": [path("/", "one")]}))
    cluster.wait_for(lambda: backend_of(cluster, "ws.test") == "pod0", what="ws Ingress")
    url = f"http://{INGRESS_HOST}:{cluster.ingress.http_port}/ws"
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, headers={"Host": "ws.test"}) as ws:
            for i in range(3):
                await ws.send_str(f"m{i}")
                assert (await ws.receive(timeout=5)).data == f"pod0:m{i}"
            # The route to the tunnel's Service changes, then its Endpoints: the open tunnel
            # is a byte pipe by now and neither touches it.
            cluster.apply(ingress("ws", {"ws.test": [path("/", "two")]}))
            cluster.wait_for(lambda: backend_of(cluster, "ws.test") == "pod1", what="re-route")
            cluster.apply(endpoints("one", POD_IPS[2:3], {"http": cluster.pods.port}))
            try:
                await ws.send_str("after")
                assert (await ws.receive(timeout=5)).data == "pod0:after"
            finally:
                cluster.apply(endpoints("one", POD_IPS[:1], {"http": cluster.pods.port}))


def test_configuration_changes_under_wrk_load_fail_no_request(cluster, tmp_path):
    cluster.apply(ingress("load", {"load.test": [path("/", "web")]}))
    cluster.wait_for(lambda: backend_of(cluster, "load.test").startswith("pod"), what="load")
    url = f"http://{INGRESS_HOST}:{cluster.ingress.http_port}/"
    # Two runs at once: pooled keep-alive connections, and a new connection per request
    # (each one matched against whatever table is current when its head completes).
    keep = start_wrk(url, "load.test", tmp_path / "keep.lua", seconds=LOAD_SECONDS)
    fresh = start_wrk(url, "load.test", tmp_path / "fresh.lua", seconds=LOAD_SECONDS,
                      connections=4, threads=1, headers=["Connection: close"])
    changes = 0
    deadline = time.monotonic() + LOAD_SECONDS - 0.5
    while time.monotonic() < deadline:  # Ingresses and Endpoints change while requests flow
        i = changes
        cluster.apply(ingress(f"churn{i % 4}", {f"churn{i}.test": [path("/", "one")]}))
        cluster.apply(endpoints("web", POD_IPS[: 2 + i % 8], {"http": cluster.pods.port}))
        cluster.apply(ingress("load", {"load.test": [path("/", "web"), path(f"/v{i}", "two")]}))
        changes += 1
    results = [wrk_result(keep), wrk_result(fresh)]
    cluster.apply(endpoints("web", POD_IPS, {"http": cluster.pods.port}))
    print(f"{changes * 3} changes during {LOAD_SECONDS}s; keep-alive: {results[0]}; "
          f"new connections: {results[1]}")
    assert changes >= 10
    for r in results:
        assert r["requests"] > 500, r
        assert (r["connect"], r["read"], r["write"], r["timeout"], r["status"]) == \
            (0, 0, 0, 0, 0), r


def test_1gib_download_and_upload_through_the_daemon(cluster, tmp_path):
    cluster.apply(ingress("big", {"big.test": [path("/", "one")]}))
    cluster.wait_for(lambda: backend_of(cluster, "big.test") == "pod0", what="big Ingress")
    t0 = time.monotonic()
    r = cluster.curl("big.test", f"/download/{GIB}", timeout=BIG_TIMEOUT_S, args=[
        "--fail", "-o", "/dev/null", "-w", "%{size_download} %{http_code}"])
    down_s = time.monotonic() - t0
    assert r.stdout.decode() == f"{GIB} 200", r.stderr
    sparse = tmp_path / "big"
    with open(sparse, "wb") as f:
        f.truncate(GIB)  # sparse: no disk used
    t0 = time.monotonic()
    code, body = cluster.status_of("big.test", "/upload", timeout=BIG_TIMEOUT_S,
                                   args=["-T", str(sparse)])
    up_s = time.monotonic() - t0
    assert code == 200 and json.loads(body)["body_bytes"] == GIB
    print(f"1 GiB through meshnet-ingress: download {down_s:.1f}s "
          f"({GIB / down_s / 1e6:.0f} MB/s), upload {up_s:.1f}s ({GIB / up_s / 1e6:.0f} MB/s)")
