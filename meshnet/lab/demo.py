"""`netns-lab/demo`: the cheat sheet's story, across the lab's nodes, as a user would type it.

A Deployment of the built-in `meshnet/echo` image (one replica per worker by default; each
asks for 100m of CPU so the scheduler spreads them), a Service in front of it, an Ingress for
a host (myapp.com), and then `curl --resolve HOST:80:WORKER_IP` from the outside namespace
against every worker's ingress: each answer names the pod and the node that served it.

Every command is printed before it runs, with its output, so the demo reads as a
walkthrough. It uses the running lab (`--name`, `--data-dir`) or brings one up first
(`--workers`). The app stays afterwards; the last lines say how to remove it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

from meshnet.cli.errors import CLIError
from meshnet.cluster import supervisor as sup

from . import run
from .plan import LabPlan, Member

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: %(name)s, labels: {app: %(name)s}}
spec:
  replicas: %(replicas)d
  selector: {matchLabels: {app: %(name)s}}
  template:
    metadata: {labels: {app: %(name)s}}
    spec:
      containers:
      - name: echo
        image: meshnet/echo
        ports: [{containerPort: 8080}]
        resources: {requests: {cpu: 100m}}
---
apiVersion: v1
kind: Service
metadata: {name: %(name)s}
spec:
  selector: {app: %(name)s}
  ports: [{protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: %(name)s}
spec:
  rules:
  - host: %(host)s
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: %(name)s, port: {number: 80}}}
"""
ROUTE_TIMEOUT_S = 30.0


def _up(plan: LabPlan, out, timeout: float) -> LabPlan:
    """The running lab's plan; a lab that is not (fully) up is brought up first: the one in
    the data dir (same shape), or a new one as `plan` says."""
    state = run.load_state(plan)
    if state is not None:
        plan = run.plan_of(state)
        if run._all_alive(plan, state):
            return plan
    out(f"Lab {plan.name} is not up in {plan.data_dir}: starting it.\n")
    run.up(plan, out, timeout)
    return plan


def demo(plan: LabPlan, out, *, name: str = "myapp", host: str = "myapp.com",
         replicas: int = 0, requests: int = 0, timeout: float = run.READY_TIMEOUT_S) -> int:
    plan = _up(plan, out, timeout)
    workers = plan.role("worker")
    replicas = replicas or len(workers)
    requests = requests or 3 * len(workers)
    env = {**os.environ, "KUBECONFIG": str(plan.kubeconfig)}
    meshctl = str(Path(plan.python).parent / "meshctl")
    out(f"\nexport KUBECONFIG={plan.kubeconfig}\n")

    def sh(*argv: str, stdin: str | None = None, show: str = "") -> str:
        out(f"\n$ {show or ' '.join(('meshctl',) + argv)}\n")
        done = subprocess.run([meshctl, *argv], input=stdin, capture_output=True, text=True,
                              env=env, timeout=timeout + 30)
        out(done.stdout)
        if done.returncode:
            raise CLIError(f"meshctl {' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    manifest = APP % {"name": name, "replicas": replicas, "host": host}
    sh("apply", "-f", "-", stdin=manifest,
       show=f"meshctl apply -f - <<EOF\n{manifest}EOF")
    sh("rollout", "status", f"deployment/{name}", f"--timeout={timeout:g}s")
    sh("get", "pods", "-l", f"app={name}", "-o", "wide")
    sh("get", "service,endpoints,ingress", name)

    out(f"\nFrom the outside namespace ({plan.member('out').ip}, not a node), through each "
        f"worker's ingress:\n")
    _wait_routed(plan, workers[0], host, timeout=ROUTE_TIMEOUT_S)
    answers: list[dict] = []
    for i in range(requests):
        w = workers[i % len(workers)]
        doc = _curl(plan, w.ip, host)
        via = f"curl --resolve {host}:80:{w.ip} http://{host}/"
        if doc is None:
            out(f"  {via}  ->  no answer\n")
            continue
        answers.append(doc)
        out(f"  {via}  ->  {doc.get('pod')} on {doc.get('node')} ({doc.get('ip')})\n")
    nodes = Counter(d.get("node") for d in answers)
    pods = {d.get("pod") for d in answers}
    out(f"\n{len(answers)} of {requests} requests answered, by {len(pods)} pod(s) on "
        f"{', '.join(f'{n} ({c})' for n, c in sorted(nodes.items()))}.\n")
    out(f"The app stays; remove it with: meshctl delete deployment,service,ingress {name}\n")
    return 0 if len(answers) == requests else 1


def _curl(plan: LabPlan, worker_ip: str, host: str) -> dict | None:
    argv = ["ip", "netns", "exec", plan.member("out").netns, "curl", "-sS", "--max-time", "3",
            "--resolve", f"{host}:80:{worker_ip}", f"http://{host}/"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode:
        return None
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        return None  # the ingress's 404/503 page: the route is not there yet
    return doc if isinstance(doc, dict) and doc.get("pod") else None


def _wait_routed(plan: LabPlan, worker: Member, host: str, timeout: float) -> None:
    """The ingress learns the route a moment after the Ingress is applied."""
    deadline = time.monotonic() + timeout
    while _curl(plan, worker.ip, host) is None:
        if time.monotonic() > deadline:
            state = run.load_state(plan)
            rec = (state.processes if state else {}).get(f"{worker.name}-ingress")
            tail = f"\nlast lines of {rec['log']}:\n{sup.log_tail(rec)}" if rec else ""
            raise CLIError(f"{host} through the ingress on {worker.ip} did not answer within "
                           f"{timeout:g}s{tail}")
        time.sleep(0.3)
