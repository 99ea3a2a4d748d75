"""answer(): the zone's replies, table-driven and written as record text (CoreDNS handler_test
style). Each row: description, question name, type, rcode, answer, authority, additional."""

from __future__ import annotations

import pytest
from dnslib import RCODE

from meshnet.dns.answer import answer
from meshnet.dns.zone import ZoneConfig, ZoneTable

from fakes import question, rr_text, sample_table

SOA = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
WEB = "web.default.svc.cluster.local."

CASES = [
    # -- ClusterIP services --------------------------------------------------------------------
    ("A of a ClusterIP service", WEB, "A", "NOERROR", [f"{WEB} 5 IN A 10.96.0.20"], [], []),
    ("case is echoed in the owner name", "WeB.Default.SVC.cluster.LOCAL.", "A", "NOERROR",
     ["WeB.Default.SVC.cluster.LOCAL. 5 IN A 10.96.0.20"], [], []),
    ("AAAA of an IPv4 service is NODATA, not NXDOMAIN", WEB, "AAAA", "NOERROR", [], [SOA], []),
    ("AAAA of a dual-stack service", "dual.default.svc.cluster.local.", "AAAA", "NOERROR",
     ["dual.default.svc.cluster.local. 5 IN AAAA fd00::21"], [], []),
    ("SRV for a named port", f"_http._tcp.{WEB}", "SRV", "NOERROR",
     [f"_http._tcp.{WEB} 5 IN SRV 0 100 80 {WEB}"], [], [f"{WEB} 5 IN A 10.96.0.20"]),
    ("port names and protocols are case-insensitive", f"_HTTP._TCP.{WEB}", "SRV", "NOERROR",
     [f"_HTTP._TCP.{WEB} 5 IN SRV 0 100 80 {WEB}"], [], [f"{WEB} 5 IN A 10.96.0.20"]),
    ("SRV at the service name lists every port (CoreDNS)", WEB, "SRV", "NOERROR",
     [f"{WEB} 5 IN SRV 0 50 80 {WEB}", f"{WEB} 5 IN SRV 0 50 8080 {WEB}"], [],
     [f"{WEB} 5 IN A 10.96.0.20"]),
    ("SRV for an unknown port name", f"_nope._tcp.{WEB}", "SRV", "NXDOMAIN", [], [SOA], []),
    ("SRV with the wrong protocol", f"_http._udp.{WEB}", "SRV", "NXDOMAIN", [], [SOA], []),
    ("the _tcp empty non-terminal", f"_tcp.{WEB}", "SRV", "NOERROR", [], [SOA], []),
    ("PTR for a ClusterIP", "20.0.96.10.in-addr.arpa.", "PTR", "NOERROR",
     [f"20.0.96.10.in-addr.arpa. 5 IN PTR {WEB}"], [], []),
    ("PTR for an IPv6 ClusterIP", "1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"
     ".d.f.ip6.arpa.", "PTR", "NOERROR",
     ["1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR "
      "dual.default.svc.cluster.local."], [], []),
    ("unknown address in the service CIDR: NXDOMAIN from the reverse zone",
     "99.0.96.10.in-addr.arpa.", "PTR", "NXDOMAIN", [],
     ["96.10.in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
      "1 7200 1800 86400 5"], []),
    # -- headless services ---------------------------------------------------------------------
    ("headless: one A per ready endpoint", "db.default.svc.cluster.local.", "A", "NOERROR",
     ["db.default.svc.cluster.local. 5 IN A 10.244.0.5",
      "db.default.svc.cluster.local. 5 IN A 10.244.0.6"], [], []),
    ("headless: endpoint hostname", "db-0.db.default.svc.cluster.local.", "A", "NOERROR",
     ["db-0.db.default.svc.cluster.local. 5 IN A 10.244.0.5"], [], []),
    ("headless: dashed IP for an endpoint without hostname",
     "10-244-0-6.db.default.svc.cluster.local.", "A", "NOERROR",
     ["10-244-0-6.db.default.svc.cluster.local. 5 IN A 10.244.0.6"], [], []),
    ("headless: a not-ready endpoint has no name",
     "10-244-0-7.db.default.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("headless: SRV per endpoint", "_pg._tcp.db.default.svc.cluster.local.", "SRV", "NOERROR",
     ["_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 "
      "10-244-0-6.db.default.svc.cluster.local.",
      "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 "
      "db-0.db.default.svc.cluster.local."], [],
     ["10-244-0-6.db.default.svc.cluster.local. 5 IN A 10.244.0.6",
      "db-0.db.default.svc.cluster.local. 5 IN A 10.244.0.5"]),
    ("headless: PTR per endpoint", "5.0.244.10.in-addr.arpa.", "PTR", "NOERROR",
     ["5.0.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."], [], []),
    ("headless with no ready endpoint: NXDOMAIN", "empty.default.svc.cluster.local.", "A",
     "NXDOMAIN", [], [SOA], []),
    ("headless with publishNotReadyAddresses", "late.default.svc.cluster.local.", "A",
     "NOERROR", ["late.default.svc.cluster.local. 5 IN A 10.244.0.9"], [], []),
    # -- ExternalName --------------------------------------------------------------------------
    ("ExternalName: CNAME", "ext.default.svc.cluster.local.", "CNAME", "NOERROR",
     ["ext.default.svc.cluster.local. 5 IN CNAME example.org."], [], []),
    ("ExternalName: A gives the CNAME (the server chases it)", "ext.default.svc.cluster.local.",
     "A", "NOERROR", ["ext.default.svc.cluster.local. 5 IN CNAME example.org."], [], []),
    ("ExternalName into the zone is followed locally", "alias.default.svc.cluster.local.", "A",
     "NOERROR", [f"alias.default.svc.cluster.local. 5 IN CNAME {WEB}",
                 f"{WEB} 5 IN A 10.96.0.20"], [], []),
    # -- pods, apex, misc ----------------------------------------------------------------------
    ("pod A record (verified)", "10-244-0-5.default.pod.cluster.local.", "A", "NOERROR",
     ["10-244-0-5.default.pod.cluster.local. 5 IN A 10.244.0.5"], [], []),
    ("pod in the wrong namespace", "10-244-0-5.other.pod.cluster.local.", "A", "NXDOMAIN",
     [], [SOA], []),
    ("pod IP with no pod", "10-244-0-99.default.pod.cluster.local.", "A", "NXDOMAIN",
     [], [SOA], []),
    ("IPv6 pod, any spelling", "fd00-0-0-0-0-0-0-5.v6.pod.cluster.local.", "AAAA", "NOERROR",
     ["fd00-0-0-0-0-0-0-5.v6.pod.cluster.local. 5 IN AAAA fd00::5"], [], []),
    ("dns-version TXT", "dns-version.cluster.local.", "TXT", "NOERROR",
     ['dns-version.cluster.local. 5 IN TXT "1.1.0"'], [], []),
    ("SOA at the apex", "cluster.local.", "SOA", "NOERROR", [SOA], [], []),
    ("NS at the apex, with glue", "cluster.local.", "NS", "NOERROR",
     ["cluster.local. 5 IN NS ns.dns.cluster.local."], [],
     ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]),
    ("namespace name is an empty non-terminal", "default.svc.cluster.local.", "A", "NOERROR",
     [], [SOA], []),
    ("svc.<zone> is an empty non-terminal", "svc.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("unknown namespace", "web.nope.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("search-path miss", "web.default.svc.cluster.local.default.svc.cluster.local.", "A",
     "NXDOMAIN", [], [SOA], []),
    ("unknown name under the apex", "nothing.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
]


@pytest.fixture(scope="module")
def table() -> ZoneTable:
    return sample_table()


@pytest.mark.parametrize("desc,name,qtype,rcode,ans,auth,add", CASES, ids=[c[0] for c in CASES])
def test_answer(table, desc, name, qtype, rcode, ans, auth, add):
    result = answer(table, question(name, qtype))
    reply = result.reply
    assert reply is not None, desc
    assert RCODE.get(reply.header.rcode) == rcode
    assert rr_text(reply.rr) == ans
    assert rr_text(reply.auth) == auth
    assert rr_text(reply.ar) == add
    assert reply.header.aa == 1
    assert str(reply.q.qname) == name  # the question is echoed, case included


def test_externalname_a_asks_the_server_to_chase(table):
    result = answer(table, question("ext.default.svc.cluster.local", "A"))
    assert result.chase == "example.org."
    assert answer(table, question("ext.default.svc.cluster.local", "TXT")).chase == ""


@pytest.mark.parametrize("name", ["example.org.", "1.1.168.192.in-addr.arpa.", "local.", "."])
def test_names_outside_local_zones_are_forwarded(table, name):
    assert answer(table, question(name, "A")).reply is None


@pytest.mark.parametrize("name", ["web.default.svc.cluster.local.", "nothing.cluster.local.",
                                  "20.0.96.10.in-addr.arpa."])
def test_before_first_sync_zone_names_get_servfail(name):
    result = answer(ZoneTable.unsynced(ZoneConfig()), question(name, "A"))
    assert RCODE.get(result.reply.header.rcode) == "SERVFAIL"
    assert result.reply.header.aa == 0
    assert answer(ZoneTable.unsynced(ZoneConfig()), question("example.org", "A")).reply is None


def test_insecure_pods_answer_any_ip():
    table = sample_table(ZoneConfig(pods="insecure"))
    reply = answer(table, question("1-2-3-4.any.pod.cluster.local", "A")).reply
    assert rr_text(reply.rr) == ["1-2-3-4.any.pod.cluster.local. 5 IN A 1.2.3.4"]


def test_disabled_pods_are_nxdomain():
    table = sample_table(ZoneConfig(pods="disabled"))
    reply = answer(table, question("10-244-0-5.default.pod.cluster.local", "A")).reply
    assert RCODE.get(reply.header.rcode) == "NXDOMAIN"


def test_non_in_class_is_refused(table):
    q = question(WEB, "A")
    q.q.qclass = 3  # CHAOS
    assert RCODE.get(answer(table, q).reply.header.rcode) == "REFUSED"
