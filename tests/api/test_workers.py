"""meshnet/workers.py's pure parts, table-first: the metrics merge behind a supervisor's one
status port, the restart backoff, and the flags a worker is started with. The supervisor itself
runs for real in tests/dns/test_dns_workers.py and tests/ingress/test_ingress_workers.py."""

from __future__ import annotations

import pytest

from meshnet.workers import (RESTART_MAX_S, RESTART_MIN_S, YOUNG_S, label_metrics, next_backoff,
                             with_label, worker_argv)


@pytest.mark.parametrize("desc, sample, want", [
    ("labels kept after the worker's", 'a_total{proto="udp"} 3',
     'a_total{worker="1",proto="udp"} 3'),
    ("no labels", "zone_names 36", 'zone_names{worker="1"} 36'),
    ("histogram bucket", 'h_bucket{le="+Inf"} 2', 'h_bucket{worker="1",le="+Inf"} 2'),
    ("colon in the name", 'job:rate{a="b"} 0.5', 'job:rate{worker="1",a="b"} 0.5'),
    ("timestamp kept", "up 1 1700000000000", 'up{worker="1"} 1 1700000000000'),
])
def test_with_label(desc, sample, want):
    assert with_label(sample, "worker", "1") == want


ONE = '# HELP a A.\n# TYPE a counter\na{q="x"} 1\n# HELP b B.\n# TYPE b gauge\nb 2\n'
TWO = '# HELP a A.\n# TYPE a counter\na{q="x"} 5\n# HELP b B.\n# TYPE b gauge\nb 7\n'
RESTARTS = ["# HELP r R.", "# TYPE r counter", "r 1"]


@pytest.mark.parametrize("desc, texts, extra, want", [
    ("families kept together, the supervisor's own lines last", [ONE, TWO], RESTARTS,
     ["# HELP a A.", "# TYPE a counter", 'a{worker="0",q="x"} 1', 'a{worker="1",q="x"} 5',
      "# HELP b B.", "# TYPE b gauge", 'b{worker="0"} 2', 'b{worker="1"} 7',
      "# HELP r R.", "# TYPE r counter", "r 1"]),
    ("a worker that did not answer (empty text) keeps its index for the next",
     ["", TWO], [],
     ["# HELP a A.", "# TYPE a counter", 'a{worker="1",q="x"} 5',
      "# HELP b B.", "# TYPE b gauge", 'b{worker="1"} 7']),
    ("a family only one worker has yet",
     ["# TYPE c counter\nc 3\n", "# TYPE d gauge\nd 4\n"], [],
     ["# TYPE c counter", 'c{worker="0"} 3', "# TYPE d gauge", 'd{worker="1"} 4']),
    ("comments other than HELP and TYPE dropped",
     ["# a comment\n# TYPE c counter\nc 3\n"], [],
     ["# TYPE c counter", 'c{worker="0"} 3']),
    ("nothing at all", [], [], []),
])
def test_label_metrics(desc, texts, extra, want):
    assert label_metrics(texts, extra) == "\n".join(want) + "\n"


@pytest.mark.parametrize("desc, backoff, lived, want", [
    ("died young: doubled", RESTART_MIN_S, 1.0, RESTART_MIN_S * 2),
    ("died young again: doubled again", 4.0, 0.1, 8.0),
    ("capped", RESTART_MAX_S, 0.1, RESTART_MAX_S),
    ("lived long: back to the minimum", 16.0, YOUNG_S + 1, RESTART_MIN_S),
])
def test_next_backoff(desc, backoff, lived, want):
    assert next_backoff(backoff, lived) == want


@pytest.mark.parametrize("desc, join, status, want_tail", [
    ("first worker, status on", (), True,
     ["--workers", "1", "--worker-of", "42", "--worker-index", "0",
      "--status-listen", "127.0.0.1:0"]),
    ("a later worker joins the first one's addresses", ("--listen", "127.0.0.1:5353"), False,
     ["--workers", "1", "--worker-of", "42", "--worker-index", "0",
      "--listen", "127.0.0.1:5353"]),
])
def test_worker_argv(desc, join, status, want_tail):
    user = ["--kubeconfig", "k", "--listen", "127.0.0.1:0", "--workers", "4"]
    assert worker_argv(user, 42, 0, join, status) == [*user, *want_tail]
