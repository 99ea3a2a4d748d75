"""netns-lab's verbs: up, down, status, exec, stop, start, cut, reconnect (restore and demo:
restore.py, demo.py).

Theory of operation
-------------------
`up` reconciles, as `meshctl up` does: no state -> a fresh lab (the data of an earlier one is
wiped); state with everything alive -> "already up"; anything else (a crash, a SIGKILL, a
half-finished `up`) -> the leftovers are cleaned as `down` would, then everything starts again
on the same data (etcd and the API servers keep their objects, agents restart their pods).
Start order:

    check the host -> switch, members, host veth -> unreachable routes -> etcd members (healthy)
    -> the first API server (it writes the CA and the admin token) -> the others with a copy
    of those -> lab kubeconfig (every API server) -> kube-dns Endpoints (the workers)
    -> agent, proxy, DNS, ingress on every worker -> every node Ready

The state (`<data-dir>/state.json`, meshnet.cluster.supervisor's format) records every
namespace, route, /etc/netns entry and process (PID + start time) *before* it is made, so
`down` after a crash removes exactly what exists. Without a state file `down` still finds the
lab by name: its namespaces (`<name>-sw`, `-cpN`, `-wN`, `-out`), the processes inside them
(`ip netns pids`) and `<name>-h`. `stop`/`start` act on one member's processes (by their
recorded argv), `cut`/`reconnect` take a member's switch port down and up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from meshnet.api.resources import lookup
from meshnet.cli.errors import CLIError
from meshnet.cli.up import ensure_kube_dns, node_ready, pod_leftovers, ready_ok, wait_until
from meshnet.client.kubeconfig import Kubeconfig
from meshnet.client.rest import RestClient
from meshnet.cluster import supervisor as sup
from meshnet.cluster.hostnet import HostNetError, ip, link_exists, netns_exists
from meshnet.cluster.plan import PlanError, ProcessSpec

from . import network
from .plan import WORKER_PROCESSES, LabPlan, Member

READY_TIMEOUT_S = 90.0
SHARED_CREDENTIALS = ("ca.crt", "ca.key", "tokens.csv")
LEASES = lookup("leases")
# Stop order: a worker's daemons, then agents (they stop their pods), API servers, etcd.
STOP_PHASES = (("ingress", "dns", "proxy"), ("agent",), ("apiserver",), ("etcd",))


def load_state(plan: LabPlan) -> sup.State | None:
    try:
        return sup.State(plan.state_path, json.loads(plan.state_path.read_text()))
    except FileNotFoundError:
        return None


def plan_of(state: sup.State) -> LabPlan:
    d = dict(state.data["plan"])
    d["data_dir"] = Path(d["data_dir"])
    d["apiserver_args"] = tuple(d["apiserver_args"])
    return LabPlan(**d)


def _new_state(plan: LabPlan) -> sup.State:
    plan_doc = {k: (str(v) if isinstance(v, Path) else v)
                for k, v in dataclasses.asdict(plan).items()}
    state = sup.State(plan.state_path, {
        "name": plan.name, "plan": plan_doc, "flags": plan.flags(), "namespaces": [],
        "etc_netns": [], "host_veth": "", "routes": [], "foreign_routes": [], "processes": {}})
    state.save()
    return state


def _recorder(state: sup.State):
    def record(kind: str, value: str) -> None:
        if kind == "host_veth":
            state.data["host_veth"] = value
        else:
            state.data[kind].append(value)
        state.save()
    return record


def _member(process_name: str) -> str:
    return process_name.split("-", 1)[0]


def _role(process_name: str) -> str:
    """cp1-apiserver -> apiserver, cp2-e3 -> etcd, w1-agent -> agent."""
    role = process_name.split("-", 1)[1]
    return "etcd" if re.fullmatch(r"e\d+", role) else role


def _all_alive(plan: LabPlan, state: sup.State) -> bool:
    """Every process of the plan runs (an `up` that died half-way has only some)."""
    procs = state.processes
    return set(procs) == {s.name for _, s in plan.processes()} and \
        all(sup.alive(r) for r in procs.values()) and \
        all(netns_exists(ns) for ns in state.data["namespaces"])


# ---------------------------------------------------------------------------------- up


def up(plan: LabPlan, out, timeout: float = READY_TIMEOUT_S) -> sup.State:
    state = load_state(plan)
    if state is not None:
        if state.data.get("flags") != plan.flags():
            raise CLIError(f"{plan.data_dir} holds a different lab ({state.data.get('flags')}); "
                           f"run `netns-lab/down --data-dir {plan.data_dir}` first, or use "
                           f"another --data-dir")
        if _all_alive(plan, state):
            out(f"lab {plan.name} is already up.\n")
            summary(plan, out)
            return state
        out(f"Cleaning up the leftovers of an earlier run ({plan.data_dir}) ...\n")
        teardown(state, out, crashed=True)
    else:
        for m in plan.members():  # a fresh lab: nothing of an earlier one's data
            shutil.rmtree(plan.member_dir(m), ignore_errors=True)
        plan.kubeconfig.unlink(missing_ok=True)
    plan.data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    out(f"Starting lab {plan.name}: {plan.control_planes} control plane(s), {plan.workers} "
        f"worker(s), {plan.etcd or 'no'} etcd member(s) (data dir {plan.data_dir})\n")
    state = _new_state(plan)
    try:
        _bring_up(plan, state, out, timeout)
    except (CLIError, HostNetError, PlanError, OSError) as exc:
        out(f"error: {exc}\nCleaning up what was started ...\n")
        teardown(state, out, crashed=True)
        raise CLIError(f"netns-lab up failed; nothing was left behind (logs are in "
                       f"{plan.data_dir / 'logs'})") from None
    out(f"lab {plan.name} is up in {time.monotonic() - t0:.1f}s.\n")
    summary(plan, out)
    return state


def _step(out, text: str):
    out(f"  {text} ...")
    t = time.monotonic()
    return lambda: out(f" ok ({time.monotonic() - t:.1f}s)\n")


def _start(plan: LabPlan, state: sup.State, specs) -> dict[str, dict]:
    recs = {}
    for member, spec in specs:
        rec = sup.start(plan, spec, state)
        rec["member"] = member.name
        recs[spec.name] = rec
    state.save()
    return recs


def _bring_up(plan: LabPlan, state: sup.State, out, timeout: float) -> None:
    done = _step(out, f"network: switch {plan.switch_netns}, {len(plan.members())} members on "
                      f"{plan.underlay}, host {plan.host_ip} on {plan.host_veth}")
    network.check_free(plan)
    network.build(plan, _recorder(state))
    network.add_routes(plan, _recorder(state))
    done()

    specs = plan.processes()
    etcd = [(m, s) for m, s in specs if _role(s.name) == "etcd"]
    apis = [(m, s) for m, s in specs if _role(s.name) == "apiserver"]
    workers = [(m, s) for m, s in specs if m.role == "worker"]
    if etcd:
        done = _step(out, f"etcd: {', '.join(s.name for _, s in etcd)}")
        start_etcd(plan, state, etcd, timeout)
        done()

    done = _step(out, f"API servers: {', '.join(plan.api_urls())}")
    rec = start_apiservers(plan, state, apis, timeout)
    client = lab_client(plan, timeout=10)
    wait_until(lambda: ensure_kube_dns(plan, client) and _node_local_dns(client),
               "the kube-dns Service", rec, timeout)
    done()

    done = _step(out, f"workers: {', '.join(m.name for m in plan.role('worker'))} "
                      f"({', '.join(WORKER_PROCESSES)})")
    recs = _start(plan, state, workers)
    for _, spec in workers:
        wait_until(lambda s=spec: ready_ok(s.ready_url), f"{spec.name} ({spec.ready_url})",
                   recs[spec.name], timeout)
    for w in plan.role("worker"):
        wait_until(lambda w=w: node_ready(client, w.name), f"node {w.name} Ready",
                   recs[f"{w.name}-agent"], timeout)
    client.close()
    done()


def start_etcd(plan: LabPlan, state: sup.State, etcd, timeout: float) -> None:
    """Start the etcd members (all at once: a new cluster needs its quorum) until healthy."""
    recs = _start(plan, state, etcd)
    for _, s in etcd:
        wait_until(lambda s=s: _etcd_healthy(s.ready_url), f"etcd {s.name}", recs[s.name], timeout)


def start_apiservers(plan: LabPlan, state: sup.State, apis, timeout: float) -> dict:
    """The first API server alone (it writes the CA and admin token unless its data dir has
    them, and leads at first), then the others with a copy of its credentials; then the lab
    kubeconfig, naming them all. Returns the first one's record."""
    first, rest = apis[0], apis[1:]
    rec = _start(plan, state, [first])[first[1].name]
    wait_until(lambda: _api_ready(plan, first[0], rec), f"API server {first[1].name}", rec, timeout)
    source = plan.member_dir(first[0]) / "apiserver"
    for member, _ in rest:
        target = plan.member_dir(member) / "apiserver"
        target.mkdir(parents=True, exist_ok=True)
        for name in SHARED_CREDENTIALS:
            if not (target / name).exists():
                shutil.copy2(source / name, target / name)
    recs = _start(plan, state, rest)
    for member, spec in rest:
        wait_until(lambda m=member, r=recs[spec.name]: _api_ready(plan, m, r),
                   f"API server {spec.name}", recs[spec.name], timeout)
    admin = yaml.safe_load((source / "admin.kubeconfig").read_text())
    fd = os.open(plan.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(plan.lab_kubeconfig(admin), f)
    return rec


def _node_local_dns(client: RestClient) -> bool:
    """Pods ask their own node's meshnet-dns (internalTrafficPolicy: Local on kube-dns, as
    NodeLocal DNSCache does): the kube-dns Endpoints are static, so with a plain Service one
    question in N would go to a worker that is down or cut off."""
    services = lookup("services")
    svc = client.get(services, "kube-dns", "kube-system")
    if (svc.get("spec") or {}).get("internalTrafficPolicy") != "Local":
        client.patch(services, "kube-dns", {"spec": {"internalTrafficPolicy": "Local"}},
                     "kube-system")
    return True


def _etcd_healthy(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.load(resp).get("health") == "true"


def _api_ready(plan: LabPlan, cp: Member, rec: dict) -> bool:
    log = Path(rec["log"]).read_text(errors="replace")
    if "ready on" not in log.rsplit("--- ", 1)[-1]:
        return False
    kc = plan.member_dir(cp) / "apiserver" / "admin.kubeconfig"
    client = RestClient(Kubeconfig.load(str(kc), {}).connection(None), timeout=5)
    try:
        client.get(lookup("namespaces"), "default")
    finally:
        client.close()
    return True


def lab_client(plan: LabPlan, timeout: float = 5) -> RestClient:
    """A client over the lab kubeconfig: every API server, failing over between them."""
    return RestClient(Kubeconfig.load(str(plan.kubeconfig), {}).connection(None),
                      timeout=timeout)


def summary(plan: LabPlan, out) -> None:
    workers = plan.role("worker")
    w = workers[0]
    lines = [f"  {m.name:<5} {m.role:<14} {m.ip:<15} namespace {m.netns}" for m in plan.members()]
    out("Members:\n" + "\n".join(lines) + "\n")
    out(f"API servers:   {', '.join(plan.api_urls())}\n"
        f"Kubeconfig:    export KUBECONFIG={plan.kubeconfig}  (every API server, with failover)\n"
        f"LoadBalancer:  pool {plan.lb_pool_range()} on the underlay; from the outside "
        f"namespace:\n"
        f"               netns-lab/exec out -- curl http://<EXTERNAL-IP>:<PORT>/\n"
        f"NodePort:      netns-lab/exec out -- curl http://{w.ip}:<NODEPORT>/   (every worker)\n"
        f"Ingress:       netns-lab/exec out -- curl -H 'Host: <HOST>' http://{w.ip}/  "
        f"(:80/:443 on every worker)\n"
        f"A shell:       netns-lab/exec {w.name} -- bash     (cp1, {w.name}, out, ...)\n"
        f"Failures:      netns-lab/stop cp1 [--kill] [apiserver|etcd]; netns-lab/cut {w.name}; "
        f"netns-lab/start / netns-lab/reconnect\n"
        f"Stop it:       netns-lab/down --name {plan.name}"
        + ("" if plan.data_dir.parent == Path("/var/lib/meshnet-lab")
           else f" --data-dir {plan.data_dir}") + "\n")


# -------------------------------------------------------------------------------- down


def _stop_many(names: list[str], procs: dict, out) -> list[str]:
    problems: list[str] = []

    def stop(name: str) -> str:
        try:
            return sup.stop(_role(name), procs[name])
        except OSError as exc:
            problems.append(f"stopping {name} (pid {procs[name]['pid']}): {exc}")
            return f"error: {exc}"
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        for name, result in zip(names, pool.map(stop, names)):
            out(f"  {name:<14} pid {procs[name]['pid']:<8} {result}\n")
    return problems


def teardown(state: sup.State, out, *, crashed: bool) -> list[str]:
    """Stop every process (by phase, each phase in parallel), clean up what a dead agent left,
    remove the network. Goes on after every error; returns them."""
    procs = state.processes
    problems: list[str] = []
    agents_alive = {n: sup.alive(r) for n, r in procs.items() if _role(n) == "agent"}
    for phase in STOP_PHASES:
        names = [n for n in procs if _role(n) in phase]
        if names:
            problems += _stop_many(names, procs, out)
    others = [n for n in procs if not any(_role(n) in p for p in STOP_PHASES)]
    if others:
        problems += _stop_many(others, procs, out)
    for name, alive in agents_alive.items():
        if crashed or not alive:
            plan = plan_of(state)
            problems += pod_leftovers(plan.member_dir(plan.member(_member(name))) / "agent")
    problems += _kill_in_namespaces(state.data["namespaces"])
    foreign = state.data.get("foreign_routes", [])
    routes = [r for r in state.data["routes"] if r not in foreign]
    problems += network.remove(state.data["namespaces"], state.data["host_veth"], routes,
                               state.data["etc_netns"])
    out(f"  removed {len(state.data['namespaces'])} namespaces, veth "
        f"{state.data['host_veth'] or '-'}, unreachable routes {', '.join(routes) or '-'}\n")
    if not problems:
        state.remove()
    return problems


def _kill_in_namespaces(namespaces: list[str]) -> list[str]:
    """Whatever still runs inside the lab's own namespaces (nothing, after the stops above,
    unless a process forked away from its session) goes with them."""
    problems = []
    for ns in namespaces:
        if not netns_exists(ns):
            continue
        problems += sup.kill_all(network.netns_pids(ns), f"in {ns}")
    return problems


def down(plan: LabPlan, out) -> int:
    state = load_state(plan)
    if state is None:
        found = _find_by_name(plan)
        if not found.data["namespaces"] and not found.data["host_veth"]:
            out(f"No lab {plan.name} in {plan.data_dir} and none on this host (nothing to "
                f"stop).\n")
            return 0
        out(f"No state in {plan.data_dir}; removing what lab {plan.name} left on this host:\n")
        state = found
        for agent_state in sorted(plan.data_dir.glob("w*/agent")):
            pod_leftovers(agent_state)  # pods a killed agent left (their PIDs are recorded)
    else:
        out(f"Stopping lab {plan.name} ({plan.data_dir}):\n")
    problems = teardown(state, out, crashed=False)
    if problems:
        raise CLIError("netns-lab down could not remove everything:\n  " + "\n  ".join(problems))
    out("Stopped; nothing of the lab is left on the host.\n")
    return 0


def _find_by_name(plan: LabPlan) -> sup.State:
    """A state rebuilt from what exists: the lab's namespaces by their exact name pattern."""
    pattern = re.compile(rf"{re.escape(plan.name)}-(sw|cp\d+|w\d+|out)")
    names = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line]
    found = [n for n in names if pattern.fullmatch(n)]
    switch = [n for n in found if n == plan.switch_netns]
    namespaces = switch + [n for n in found if n not in switch]
    if namespaces and not switch:
        namespaces = [""] + namespaces  # remove() deletes namespaces[0] last
    return sup.State(plan.state_path, {
        "name": plan.name, "plan": {}, "namespaces": namespaces,
        "etc_netns": [n for n in namespaces if n and (network.ETC_NETNS / n).is_dir()],
        "host_veth": plan.host_veth if link_exists(plan.host_veth) else "",
        "routes": [plan.underlay], "processes": {}})


# ------------------------------------------------------------------------------ status


def status(plan: LabPlan, out) -> int:
    state = load_state(plan)
    if state is None:
        out(f"No lab {plan.name} in {plan.data_dir}: start one with netns-lab/up.\n")
        return 1
    plan = plan_of(state)
    healthy = True
    out(f"Lab {plan.name} ({plan.data_dir}), underlay {plan.underlay}:\n")
    for m in plan.members():
        present = netns_exists(m.netns)
        link = network.link_up(plan, m)
        procs = {n: r for n, r in state.processes.items() if r.get("member") == m.name}
        states = ", ".join(f"{n.split('-', 1)[1]} {'running' if sup.alive(r) else 'STOPPED'}"
                           for n, r in procs.items())
        healthy &= present and bool(link) and all(sup.alive(r) for r in procs.values())
        out(f"  {m.name:<5} {m.ip:<15} {'' if present else 'NAMESPACE MISSING '}"
            f"{'link up' if link else 'CUT OFF' if link is False else 'NO SWITCH'}"
            f"{'; ' + states if states else ''}\n")
    try:
        client = lab_client(plan, timeout=3)
        nodes = {w.name: node_ready(client, w.name) for w in plan.role("worker")}
        lease = client.get(LEASES, "meshnet-controller-manager", "kube-system")
        ep = client.get(lookup("endpoints"), "kubernetes", "default")
        apis = sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])
        client.close()
        out("Nodes: " + ", ".join(f"{n} {'Ready' if r else 'NotReady'}"
                                  for n, r in nodes.items()) + "\n")
        out(f"Leader: {(lease.get('spec') or {}).get('holderIdentity') or '-'}; live API "
            f"servers (kubernetes Endpoints): {', '.join(apis) or '-'}\n")
        healthy &= all(nodes.values())
    except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
        out(f"Cluster: not reachable ({exc})\n")
        healthy = False
    out(f"KUBECONFIG={plan.kubeconfig}\n")
    return 0 if healthy else 1


# ------------------------------------------------------------------- member operations


def _member_processes(state: sup.State, member: Member, which: list[str]) -> list[str]:
    names = [n for n, r in state.processes.items() if r.get("member") == member.name]
    if which:
        names = [n for n in names if n.split("-", 1)[1] in which or _role(n) in which]
        if not names:
            raise CLIError(f"{member.name} runs no {' or '.join(which)}")
    return names


def _loaded(plan: LabPlan) -> tuple[sup.State, LabPlan]:
    state = load_state(plan)
    if state is None:
        raise CLIError(f"No lab {plan.name} in {plan.data_dir}: start one with netns-lab/up")
    return state, plan_of(state)


def stop(plan: LabPlan, member_name: str, which: list[str], kill: bool, out) -> int:
    state, plan = _loaded(plan)
    member = plan.member(member_name)
    for name in _member_processes(state, member, which):
        rec = state.processes[name]
        if kill and sup.alive(rec):
            os.killpg(rec["pid"], signal.SIGKILL)  # its own session: pid == pgid
            result = "killed (SIGKILL)"
        else:
            result = sup.stop(_role(name), rec)
        out(f"  {name:<14} pid {rec['pid']:<8} {result}\n")
    return 0


def start(plan: LabPlan, member_name: str, which: list[str], out) -> int:
    state, plan = _loaded(plan)
    member = plan.member(member_name)
    for name in _member_processes(state, member, which):
        rec = state.processes[name]
        if sup.alive(rec):
            out(f"  {name:<14} pid {rec['pid']:<8} already running\n")
            continue
        new = sup.start(plan, ProcessSpec(name, tuple(rec["argv"]), False), state)
        new["member"] = member.name
        state.save()
        out(f"  {name:<14} pid {new['pid']:<8} started\n")
    return 0


def cut(plan: LabPlan, member_name: str, connected: bool, out) -> int:
    _, plan = _loaded(plan)
    member = plan.member(member_name)
    network.set_link(plan, member, connected)
    out(f"  {member.name} ({member.ip}) {'reconnected' if connected else 'cut off'}\n")
    return 0
