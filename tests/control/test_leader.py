"""Leader election: the pure decision table, the `kubernetes` Endpoints from identity leases,
and two real meshnet-apiserver processes on one etcd handing over leadership."""

from __future__ import annotations

import time

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from conftest import start_apiserver
from etcd_server import start_etcd

from meshnet.control.controllers.bootstrap import kubernetes_subsets, next_expiry_s
from meshnet.control.controllers.config import ControllerConfig
from meshnet.control.controllers.leader import (
    ACQUIRE, IDENTITY_LABEL, IDENTITY_LABEL_VALUE, RENEW, WAIT, LeaseView, decide,
    identity_lease_name, micro_time,
)
from meshnet.control.controllers.podutil import parse_time

NOW = 1_700_000_000.0
ME, OTHER = "10.0.0.1:6443", "10.0.0.2:6443"

# (description, lease, now, action, holder written, leaseTransitions written)
DECISIONS = [
    ("no lease: create it", None, NOW, ACQUIRE, ME, 0),
    ("held by me: renew, transitions kept",
     LeaseView(ME, NOW - 1, NOW - 100, 15, 3), NOW, RENEW, ME, 3),
    ("held by me even if expired (after my own restart): renew",
     LeaseView(ME, NOW - 60, NOW - 100, 15, 3), NOW, RENEW, ME, 3),
    ("held by another, fresh: wait",
     LeaseView(OTHER, NOW - 1, NOW - 100, 15, 2), NOW, WAIT, None, None),
    ("held by another, one tick before expiry: wait",
     LeaseView(OTHER, NOW - 14.9, NOW - 100, 15, 2), NOW, WAIT, None, None),
    ("held by another, renewTime + duration passed: take over, transitions bumped",
     LeaseView(OTHER, NOW - 15, NOW - 100, 15, 2), NOW, ACQUIRE, ME, 3),
    ("the holder's duration counts, not mine",
     LeaseView(OTHER, NOW - 20, NOW - 100, 30, 2), NOW, WAIT, None, None),
    ("released (no holder): take it at once",
     LeaseView("", NOW - 1, NOW - 100, 1, 5), NOW, ACQUIRE, ME, 6),
    ("holder but never renewed: expired",
     LeaseView(OTHER, None, None, 15, 0), NOW, ACQUIRE, ME, 1),
]


@pytest.mark.parametrize("desc,lease,now,action,holder,transitions", DECISIONS,
                         ids=[d[0] for d in DECISIONS])
def test_decide(desc, lease, now, action, holder, transitions):
    decision = decide(lease, ME, now, 15)
    assert decision.action == action, decision.reason
    if action == WAIT:
        assert decision.spec is None
        return
    spec = decision.spec
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == (holder, transitions)
    assert parse_time(spec["renewTime"]) == pytest.approx(now, abs=1e-5)
    acquired = parse_time(spec["acquireTime"])
    if action == RENEW:
        assert acquired == pytest.approx(lease.acquire_time, abs=1e-5)
    else:
        assert acquired == pytest.approx(now, abs=1e-5)


def test_decision_round_trips_through_the_lease_object():
    spec = decide(None, ME, NOW, 15).spec
    view = LeaseView.of({"spec": spec})
    assert view.holder == ME and view.duration_s == 15
    assert decide(view, OTHER, NOW + 14.99, 15).action == WAIT
    assert decide(view, OTHER, NOW + 15, 15).action == ACQUIRE


@pytest.mark.parametrize("identity,name", [
    ("127.0.0.1:6443", "apiserver-127-0-0-1-6443"),
    ("[::1]:6443", "apiserver-1-6443"),
    ("[fd00::a]:443", "apiserver-fd00-a-443"),
])
def test_identity_lease_name_is_a_dns_name(identity, name):
    assert identity_lease_name(identity) == name


def _identity(holder: str, renewed: float, duration: int = 15, labelled: bool = True) -> dict:
    labels = {IDENTITY_LABEL: IDENTITY_LABEL_VALUE} if labelled else {}
    return {"metadata": {"name": identity_lease_name(holder), "labels": labels},
            "spec": {"holderIdentity": holder, "renewTime": micro_time(renewed),
                     "leaseDurationSeconds": duration}}


CONFIG = ControllerConfig(advertise_address="10.0.0.1", advertise_port=6443)

# (description, leases, expected (port, ips) pairs, seconds until the next change)
SUBSETS = [
    ("no leases: only this server", [], [(6443, ["10.0.0.1"])], None),
    ("a live peer is listed", [_identity(OTHER, NOW - 5)],
     [(6443, ["10.0.0.1", "10.0.0.2"])], 10.0),
    ("an expired peer is not", [_identity(OTHER, NOW - 16)], [(6443, ["10.0.0.1"])], None),
    ("my own lease does not duplicate me", [_identity(ME, NOW - 1)],
     [(6443, ["10.0.0.1"])], 14.0),
    ("another port: another subset", [_identity("10.0.0.3:7443", NOW)],
     [(6443, ["10.0.0.1"]), (7443, ["10.0.0.3"])], 15.0),
    ("the leader lease (unlabelled) is not an API server",
     [_identity(OTHER, NOW, labelled=False)], [(6443, ["10.0.0.1"])], None),
]


@pytest.mark.parametrize("desc,leases,want,expiry", SUBSETS, ids=[s[0] for s in SUBSETS])
def test_kubernetes_subsets_from_identity_leases(desc, leases, want, expiry):
    subsets = kubernetes_subsets(CONFIG, leases, NOW)
    got = [(s["ports"][0]["port"], [a["ip"] for a in s["addresses"]]) for s in subsets]
    assert got == want
    assert next_expiry_s(leases, NOW) == (pytest.approx(expiry, abs=1e-5) if expiry else None)


# -- two real API servers on one etcd ----------------------------------------------------------

LEASE_S = 3
TAKEOVER_TIMEOUT_S = 15.0


@pytest.fixture
def etcd(tmp_path):
    (tmp_path / "etcd").mkdir()
    cluster = start_etcd(tmp_path / "etcd")
    try:
        yield cluster
    finally:
        cluster.stop()


def _api(server):
    return config.new_client_from_config(config_file=str(server.kubeconfig))


def _wait(what: str, fn, timeout_s: float = TAKEOVER_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except ApiException as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)  # polling the API: the state is in another process
    raise AssertionError(f"{what} not reached within {timeout_s}s (last: {last!r})")


def _holder(api) -> str:
    lease = client.CoordinationV1Api(api).read_namespaced_lease(
        "meshnet-controller-manager", "kube-system")
    return lease.spec.holder_identity or ""


def _endpoints(api) -> list[str]:
    ep = client.CoreV1Api(api).read_namespaced_endpoints("kubernetes", "default")
    return sorted(f"{a.ip}:{s.ports[0].port}" for s in ep.subsets or () for a in s.addresses)


def test_two_api_servers_hand_over_leadership(tmp_path, etcd):
    args = ["--store", etcd.url, "--leader-lease-duration", f"{LEASE_S}s"]
    servers = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(start_apiserver(tmp_path / name, args))
        ids = {f"127.0.0.1:{s.port}": s for s in servers}
        apis = {ident: _api(s) for ident, s in ids.items()}

        first = _holder(next(iter(apis.values())))
        assert first in ids
        assert all(_holder(api) == first for api in apis.values())
        # Both live: both listed, whichever server is asked.
        both = sorted(ids)
        _wait("both servers in the kubernetes Endpoints",
              lambda: _endpoints(apis[first]) == both)

        lease = client.CoordinationV1Api(apis[first]).read_namespaced_lease(
            "meshnet-controller-manager", "kube-system")
        transitions = lease.spec.lease_transitions

        ids[first].kill()
        survivor = next(i for i in ids if i != first)
        api = apis[survivor]
        t0 = time.monotonic()
        _wait("the survivor taking over", lambda: _holder(api) == survivor)
        took_s = time.monotonic() - t0
        assert took_s < 2 * LEASE_S + 1, f"take-over took {took_s:.1f}s"
        lease = client.CoordinationV1Api(api).read_namespaced_lease(
            "meshnet-controller-manager", "kube-system")
        assert lease.spec.lease_transitions == transitions + 1

        # Controllers run on the survivor: a new Service gets Endpoints, a namespace goes away.
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "after"}})
        core.create_namespaced_service("after", {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
        _wait("Endpoints for a new Service",
              lambda: core.read_namespaced_endpoints("web", "after"))
        core.delete_namespace("after")

        def gone():
            try:
                core.read_namespace("after")
            except ApiException as exc:
                return exc.status == 404
            return False
        _wait("the namespace deletion to finish", gone)

        # The dead server's identity lease expires: only the survivor is listed.
        _wait("only the survivor in the kubernetes Endpoints",
              lambda: _endpoints(api) == [survivor])

        # The old leader comes back as a follower; a dead follower drops out of the Endpoints
        # when its identity lease expires (the leader re-checks at that moment).
        ids[first].start()
        _wait("the restarted server listed again", lambda: _endpoints(api) == both)
        assert _holder(api) == survivor
        ids[first].kill()
        _wait("the dead follower dropped", lambda: _endpoints(api) == [survivor],
              timeout_s=LEASE_S + 3)
    finally:
        for server in servers:
            server.stop()
