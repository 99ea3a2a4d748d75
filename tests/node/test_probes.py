"""Probes: threshold tracking (pure) and parsing; the actions run in the e2e tests."""

import pytest

from meshnet.node.probes import ProbeSpec, ProbeTracker, parse_probe

TRACKER = [
    ("readiness starts failing, one success flips it", False, 3, 1, [True], [True]),
    ("liveness needs failureThreshold failures in a row", True, 3, 1,
     [False, False, True, False, False, False], [True, True, True, True, True, False]),
    ("successThreshold 2 needs two in a row", False, 1, 2, [True, False, True, True],
     [False, False, False, True]),
    ("back to success after failing", True, 1, 1, [False, True], [False, True]),
]


@pytest.mark.parametrize("desc,initial,fail,succ,observations,results", TRACKER,
                         ids=[c[0] for c in TRACKER])
def test_tracker(desc, initial, fail, succ, observations, results):
    tracker = ProbeTracker(ProbeSpec("tcpSocket", failure_threshold=fail,
                                     success_threshold=succ), initial)
    got = []
    for ok in observations:
        tracker.observe(ok)
        got.append(tracker.result)
    assert got == results


CONTAINER = {"ports": [{"name": "http", "containerPort": 8080}]}
PARSE = [
    ("httpGet with a named port", {"httpGet": {"path": "/healthz", "port": "http"},
                                   "periodSeconds": 2},
     ProbeSpec("httpGet", 8080, "/healthz", period_s=2)),
    ("tcpSocket defaults", {"tcpSocket": {"port": 9000}}, ProbeSpec("tcpSocket", 9000)),
    ("exec with thresholds", {"exec": {"command": ["cat", "/ready"]}, "failureThreshold": 1,
                              "initialDelaySeconds": 5},
     ProbeSpec("exec", command=("cat", "/ready"), failure_threshold=1, initial_delay_s=5)),
    ("no probe", None, None),
]


@pytest.mark.parametrize("desc,probe,expected", PARSE, ids=[c[0] for c in PARSE])
def test_parse_probe(desc, probe, expected):
    assert parse_probe(probe, CONTAINER) == expected
