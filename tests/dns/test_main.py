"""meshnet-dns end to end: the daemon process fed by a real API server, queried with dig over
UDP and TCP on 127.0.0.1, forwarding to an upstream this test runs itself (never the host's)."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from fakes import DnsDaemon, ThreadedUpstream, dig
from netns import wait_for

NS = "dnse2e"
ZONE = "cluster.local"
MANY = [f"10.244.7.{i}" for i in range(1, 36)]  # 35 headless endpoints: > 512 bytes of A


@pytest.fixture(scope="module")
def upstream():
    up = ThreadedUpstream({"example.org.": ["example.org. 300 IN A 192.0.2.10"]})
    yield up
    up.close()


@pytest.fixture(scope="module")
def core(k8s):
    api = client.CoreV1Api(k8s)
    api.create_namespace({"metadata": {"name": NS}})
    api.create_namespaced_service(NS, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}})
    api.create_namespaced_service(NS, {"metadata": {"name": "db"}, "spec": {
        "clusterIP": "None", "selector": {"app": "db"},
        "ports": [{"name": "pg", "port": 5432, "targetPort": 5432}]}})
    api.create_namespaced_service(NS, {"metadata": {"name": "ext"}, "spec": {
        "type": "ExternalName", "externalName": "example.org"}})
    api.create_namespaced_service(NS, {"metadata": {"name": "many"}, "spec": {
        "clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
    api.create_namespaced_endpoints(NS, {"metadata": {"name": "many"}, "subsets": [{
        "addresses": [{"ip": ip} for ip in MANY], "ports": [{"name": "http", "port": 80}]}]})
    for i in range(2):
        api.create_namespaced_pod(NS, {
            "metadata": {"name": f"db-{i}", "labels": {"app": "db"}},
            "spec": {"hostname": f"db-{i}", "subdomain": "db", "nodeName": "node-a",
                     "containers": [{"name": "c", "image": "meshnet/echo",
                                     "ports": [{"containerPort": 5432}]}]}})
        set_ready(api, f"db-{i}", f"10.244.5.{i + 1}", True)
    return api


def set_ready(api, name, ip, ready):
    api.patch_namespaced_pod_status(name, NS, {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})


@pytest.fixture(scope="module")
def dns(apiserver, core, upstream, tmp_path_factory):
    daemon = DnsDaemon(apiserver.kubeconfig, upstream.address,
                       tmp_path_factory.mktemp("dns") / "dns.log")
    try:
        daemon.wait_ready()
        # the endpoints controller has written db's Endpoints by now or soon
        wait_for(lambda: len(dig(daemon.port, f"db.{NS}.svc.{ZONE}").answer) == 2, "db ready")
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def web_ip(core):
    return core.read_namespaced_service("web", NS).spec.cluster_ip


def test_health_and_readiness(dns):
    assert dns.status("/healthz") == (200, "ok")
    assert dns.status("/ready") == (200, "ok")


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_service_a_and_flags(dns, web_ip, tcp):
    r = dig(dns.port, f"web.{NS}.svc.{ZONE}", "A", *(["+tcp"] if tcp else []))
    assert r.status == "NOERROR" and "aa" in r.flags
    assert r.answer == [f"web.{NS}.svc.{ZONE}. 5 IN A {web_ip}"]


def test_case_is_echoed(dns, web_ip):
    r = dig(dns.port, f"WeB.{NS.upper()}.svc.Cluster.Local", "A")
    assert r.answer == [f"WeB.{NS.upper()}.svc.Cluster.Local. 5 IN A {web_ip}"]


def test_aaaa_of_ipv4_service_is_nodata_with_soa(dns):
    r = dig(dns.port, f"web.{NS}.svc.{ZONE}", "AAAA")
    assert r.status == "NOERROR" and r.answer == []
    assert r.authority[0].startswith(f"{ZONE}. 5 IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}.")


def test_nxdomain_with_soa(dns):
    r = dig(dns.port, f"nope.{NS}.svc.{ZONE}", "A")
    assert r.status == "NXDOMAIN" and "aa" in r.flags and "SOA" in r.authority[0]


def test_srv_named_port(dns):
    r = dig(dns.port, f"_http._tcp.web.{NS}.svc.{ZONE}", "SRV")
    assert r.answer == [f"_http._tcp.web.{NS}.svc.{ZONE}. 5 IN SRV 0 100 80 web.{NS}.svc.{ZONE}."]


def test_ptr_for_cluster_ip(dns, web_ip):
    r = dig(dns.port, "", "", "-x", web_ip)
    assert r.answer[0].endswith(f"IN PTR web.{NS}.svc.{ZONE}.")


def test_headless_records(dns):
    r = dig(dns.port, f"db.{NS}.svc.{ZONE}", "A")
    assert sorted(r.answer) == [f"db.{NS}.svc.{ZONE}. 5 IN A 10.244.5.1",
                                f"db.{NS}.svc.{ZONE}. 5 IN A 10.244.5.2"]
    r = dig(dns.port, f"db-0.db.{NS}.svc.{ZONE}", "A")
    assert r.answer == [f"db-0.db.{NS}.svc.{ZONE}. 5 IN A 10.244.5.1"]
    r = dig(dns.port, f"_pg._tcp.db.{NS}.svc.{ZONE}", "SRV")
    assert sorted(r.answer) == [
        f"_pg._tcp.db.{NS}.svc.{ZONE}. 5 IN SRV 0 50 5432 db-{i}.db.{NS}.svc.{ZONE}."
        for i in range(2)]
    assert len(r.additional) == 2
    r = dig(dns.port, "", "", "-x", "10.244.5.2")
    assert r.answer == [f"2.5.244.10.in-addr.arpa. 5 IN PTR db-1.db.{NS}.svc.{ZONE}."]
    r = dig(dns.port, f"10-244-7-3.many.{NS}.svc.{ZONE}", "A")
    assert r.answer == [f"10-244-7-3.many.{NS}.svc.{ZONE}. 5 IN A 10.244.7.3"]


def test_externalname_cname_chased_upstream(dns):
    r = dig(dns.port, f"ext.{NS}.svc.{ZONE}", "A")
    assert r.answer == [f"ext.{NS}.svc.{ZONE}. 5 IN CNAME example.org.",
                        "example.org. 300 IN A 192.0.2.10"]


def test_pod_record_verified(dns):
    assert dig(dns.port, f"10-244-5-1.{NS}.pod.{ZONE}").answer == [
        f"10-244-5-1.{NS}.pod.{ZONE}. 5 IN A 10.244.5.1"]
    assert dig(dns.port, f"10-244-5-9.{NS}.pod.{ZONE}").status == "NXDOMAIN"


def test_apex_records(dns):
    assert dig(dns.port, f"dns-version.{ZONE}", "TXT").answer == [
        f'dns-version.{ZONE}. 5 IN TXT "1.1.0"']
    assert dig(dns.port, ZONE, "NS").answer == [f"{ZONE}. 5 IN NS ns.dns.{ZONE}."]
    soa = dig(dns.port, ZONE, "SOA").answer
    assert len(soa) == 1 and " SOA ns.dns." in soa[0]


def test_truncation_then_tcp_with_35_endpoints(dns):
    name = f"many.{NS}.svc.{ZONE}"
    r = dig(dns.port, name, "A", "+noedns", "+ignore")
    assert "tc" in r.flags and r.answer == [] and f";{name}." in r.text
    r = dig(dns.port, name, "A", "+noedns")  # dig retries over TCP by itself
    assert r.tcp_retry and len(r.answer) == len(MANY)
    assert len(dig(dns.port, name, "A", "+tcp").answer) == len(MANY)


def test_edns(dns):
    name = f"many.{NS}.svc.{ZONE}"
    r = dig(dns.port, name, "A", "+bufsize=4096", "+ignore")
    assert "tc" not in r.flags and len(r.answer) == len(MANY)
    assert "; EDNS: version: 0" in r.text and "udp: 1232" in r.text
    r = dig(dns.port, name, "A", "+bufsize=600", "+ignore")
    assert "tc" in r.flags
    r = dig(dns.port, name, "A", "+edns=1", "+noednsnegotiation")
    assert r.status == "BADVERS"


def test_forwarding_to_the_test_upstream(dns, upstream):
    r = dig(dns.port, "example.org", "A")
    assert r.status == "NOERROR" and "aa" not in r.flags
    assert r.answer[0].endswith("IN A 192.0.2.10")
    assert dig(dns.port, "nothing.example", "A").status == "NXDOMAIN"


def test_readiness_changes(dns, core):
    set_ready(core, "db-1", "10.244.5.2", False)
    wait_for(lambda: dig(dns.port, f"db-1.db.{NS}.svc.{ZONE}").status == "NXDOMAIN",
               "db-1 gone when not ready")
    assert dig(dns.port, f"db.{NS}.svc.{ZONE}").answer == [
        f"db.{NS}.svc.{ZONE}. 5 IN A 10.244.5.1"]
    set_ready(core, "db-0", "10.244.5.1", False)
    wait_for(lambda: dig(dns.port, f"db.{NS}.svc.{ZONE}").status == "NXDOMAIN",
               "headless service with no ready endpoint is NXDOMAIN")
    for i in range(2):
        set_ready(core, f"db-{i}", f"10.244.5.{i + 1}", True)
    wait_for(lambda: len(dig(dns.port, f"db.{NS}.svc.{ZONE}").answer) == 2, "db back")


def test_propagation_after_create_and_delete(dns, core):
    name = f"late.{NS}.svc.{ZONE}"
    assert dig(dns.port, name).status == "NXDOMAIN"
    start = time.monotonic()
    svc = core.create_namespaced_service(NS, {"metadata": {"name": "late"}, "spec": {
        "ports": [{"port": 8080}]}})
    r = wait_for(lambda: (x := dig(dns.port, name)).answer and x, "late appears")
    created_s = time.monotonic() - start
    assert r.answer == [f"{name}. 5 IN A {svc.spec.cluster_ip}"]
    start = time.monotonic()
    core.delete_namespaced_service("late", NS)
    wait_for(lambda: dig(dns.port, name).status == "NXDOMAIN", "late disappears")
    deleted_s = time.monotonic() - start
    # each includes one API call and a dig process (~10-30 ms); the DNS side is milliseconds
    assert created_s < 2.0 and deleted_s < 2.0, (created_s, deleted_s)
    print(f"propagation: create {created_s * 1000:.0f} ms, delete {deleted_s * 1000:.0f} ms")


def test_metrics(dns):
    code, text = dns.status("/metrics")
    assert code == 200
    assert 'meshnet_dns_requests_total{proto="udp",type="A"}' in text
    assert 'meshnet_dns_responses_total{rcode="NXDOMAIN"}' in text
    assert 'meshnet_dns_request_duration_seconds_bucket{source="zone",le="0.001"}' in text
    assert "meshnet_dns_zone_syncs_total" in text


# -- flags (pure) ------------------------------------------------------------------------------

from meshnet.daemon import DaemonError  # noqa: E402
from meshnet.dns.main import parse_hostport, upstreams_from_resolv_conf  # noqa: E402

HOSTPORT_CASES = [
    ("IPv4 with port", "127.0.0.1:5353", None, ("127.0.0.1", 5353)),
    ("IPv6 in brackets", "[::1]:53", None, ("::1", 53)),
    ("bare address takes the default port", "127.0.0.2", 53, ("127.0.0.2", 53)),
    ("bare IPv6 takes the default port", "::1", 53, ("::1", 53)),
]


@pytest.mark.parametrize("desc,text,default,want", HOSTPORT_CASES,
                         ids=[c[0] for c in HOSTPORT_CASES])
def test_parse_hostport(desc, text, default, want):
    assert parse_hostport(text, "--upstream", default) == want


@pytest.mark.parametrize("text", ["localhost:53", "127.0.0.1", "127.0.0.1:99999", "1.2.3.4:x"])
def test_parse_hostport_errors_name_the_flag(text):
    with pytest.raises(DaemonError, match="--listen"):
        parse_hostport(text, "--listen")


def test_resolv_conf_parsing(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# comment\nsearch x\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\n"
                    "nameserver bogus\noptions ndots:5\n")
    assert upstreams_from_resolv_conf(str(path)) == [("127.0.0.53", 53), ("fe80::1", 53)]
    assert upstreams_from_resolv_conf(str(tmp_path / "missing")) == []
