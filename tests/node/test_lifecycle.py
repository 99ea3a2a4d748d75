"""The pod lifecycle state machine: phases, conditions, container statuses, restarts."""

import pytest

from meshnet.node import lifecycle as lc

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:01:00Z"


def running(name="c", ready=True, restarts=0):
    cs = lc.started(lc.CState(name, "img"), NOW, "netns://1")
    cs = lc.probed(cs, ready)
    for _ in range(restarts):
        cs = lc.started(lc.exited(cs, 1, NOW), NOW, "netns://2")
    return cs


def terminated(code, name="c"):
    return lc.exited(running(name), code, LATER)


def crashlooping(name="c"):
    return lc.crash_loop(terminated(1, name), 10)


WAITING = lc.CState("c")

PHASES = [
    ("nothing started yet", "Always", [WAITING], "Pending"),
    ("one waiting, one running", "Always", [running("a"), lc.CState("b")], "Pending"),
    ("all running", "Always", [running("a"), running("b")], "Running"),
    ("running and not ready is still Running", "Always", [running(ready=False)], "Running"),
    ("Always: exited 0 will restart", "Always", [terminated(0)], "Running"),
    ("Always: crash looping is Running", "Always", [crashlooping()], "Running"),
    ("Never: exit 0 is Succeeded", "Never", [terminated(0)], "Succeeded"),
    ("Never: any failure is Failed", "Never", [terminated(0, "a"), terminated(2, "b")], "Failed"),
    ("OnFailure: all succeeded", "OnFailure", [terminated(0)], "Succeeded"),
    ("OnFailure: a failure will restart", "OnFailure", [terminated(1)], "Running"),
    ("one still running keeps it Running", "Never", [terminated(1, "a"), running("b")], "Running"),
]


@pytest.mark.parametrize("desc,policy,states,expected", PHASES, ids=[c[0] for c in PHASES])
def test_pod_phase(desc, policy, states, expected):
    assert lc.pod_phase(policy, states) == expected


RESTART = [
    ("Always restarts success", "Always", 0, True),
    ("Always restarts failure", "Always", 1, True),
    ("OnFailure skips success", "OnFailure", 0, False),
    ("OnFailure restarts failure", "OnFailure", 137, True),
    ("Never never", "Never", 1, False),
]


@pytest.mark.parametrize("desc,policy,code,expected", RESTART, ids=[c[0] for c in RESTART])
def test_should_restart(desc, policy, code, expected):
    assert lc.should_restart(policy, code) is expected


def test_transitions_count_restarts_and_keep_the_last_run():
    cs = lc.CState("app", "meshnet/echo")
    cs = lc.started(cs, NOW, "netns://10")
    assert (cs.state, cs.restart_count, cs.ready) == ("running", 0, False)
    cs = lc.exited(cs, 137, LATER, signal=9)
    assert (cs.state, cs.reason, cs.exit_code) == ("terminated", "Error", 137)
    cs = lc.crash_loop(cs, 20)
    assert (cs.state, cs.reason) == ("waiting", "CrashLoopBackOff")
    assert cs.message == "back-off 20s restarting failed container=app"
    cs = lc.started(cs, LATER, "netns://11")
    assert cs.restart_count == 1 and dict(cs.last_terminated)["exitCode"] == 137
    status = lc.container_status(cs)
    assert status["lastState"]["terminated"]["containerID"] == "netns://10"
    assert status["state"] == {"running": {"startedAt": LATER}}


STATUS = [
    ("waiting container", lc.waiting(WAITING, "CreateContainerConfigError",
                                     'configmap "x" not found'),
     {"waiting": {"reason": "CreateContainerConfigError",
                  "message": 'configmap "x" not found'}}),
    ("completed container", terminated(0),
     {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": NOW,
                     "finishedAt": LATER, "containerID": "netns://1"}}),
]


@pytest.mark.parametrize("desc,cs,state", STATUS, ids=[c[0] for c in STATUS])
def test_container_status_state(desc, cs, state):
    assert lc.container_status(cs)["state"] == state


def conds(status):
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_pod_status_ready_follows_every_container():
    both = lc.pod_status("Always", [running("a"), running("b")], now=NOW, pod_ip="10.244.1.5",
                         host_ip="192.168.1.1", start_time=NOW)
    assert conds(both) == {"Initialized": "True", "Ready": "True", "ContainersReady": "True",
                           "PodScheduled": "True"}
    assert (both["podIP"], both["podIPs"], both["hostIP"]) == \
        ("10.244.1.5", [{"ip": "10.244.1.5"}], "192.168.1.1")
    one = lc.pod_status("Always", [running("a"), running("b", ready=False)], now=LATER,
                        pod_ip="10.244.1.5", host_ip="192.168.1.1", start_time=NOW,
                        previous=both)
    assert conds(one)["Ready"] == "False"
    ready = next(c for c in one["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["lastTransitionTime"]) == ("ContainersNotReady", LATER)
    scheduled = next(c for c in one["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["lastTransitionTime"] == NOW, "unchanged conditions keep their time"


def test_completed_pod_is_not_ready():
    status = lc.pod_status("Never", [terminated(0)], now=NOW, pod_ip="", host_ip="h",
                           start_time=NOW)
    assert status["phase"] == "Succeeded" and conds(status)["Ready"] == "False"
    assert status["podIP"] is None and status["podIPs"] == []
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "PodCompleted"


OURS = lc.pod_status("Always", [running()], now=NOW, pod_ip="10.244.0.5", host_ip="192.168.1.2",
                     start_time=NOW)


def with_ready(status, value, reason):
    conds = [dict(c, status=value, reason=reason) if c["type"] == "Ready" else c
             for c in status["conditions"]]
    return {**status, "conditions": conds}


def merge_patched(status):
    """What the API keeps of a status written with a JSON merge patch: no null fields."""
    return {k: v for k, v in status.items() if v is not None} | {
        "conditions": [{k: v for k, v in c.items() if v is not None}
                       for c in status["conditions"]]}


DIFFERS = [
    ("our own write as the API keeps it", merge_patched(OURS), False),
    ("the API has never seen a status", None, True),
    ("marked Ready=False by the node lifecycle controller",
     with_ready(merge_patched(OURS), "False", "NodeNotReady"), True),
    ("another writer's condition type is not ours to compare",
     {**merge_patched(OURS), "conditions": merge_patched(OURS)["conditions"] + [
         {"type": "DisruptionTarget", "status": "True"}]}, False),
    ("a field of ours changed (an older backup restored)",
     {**merge_patched(OURS), "podIP": "10.244.0.9"}, True),
    ("a container status lost", {**merge_patched(OURS), "containerStatuses": []}, True),
    ("empty strings and lists are absent", {**merge_patched(OURS), "nominatedNodeName": ""},
     False),
]


@pytest.mark.parametrize("desc,api,expected", DIFFERS, ids=[c[0] for c in DIFFERS])
def test_status_differs(desc, api, expected):
    assert lc.status_differs(api, OURS) is expected
