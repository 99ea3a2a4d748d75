"""`meshctl up`, `meshctl down`, `meshctl status`: a single-node cluster on this host.

Theory of operation
-------------------
`up` reconciles: no state -> start everything; state with every process alive -> "already
up"; anything else (a crash, a SIGKILL, a half-finished `up`) -> clean the leftovers exactly as
`down` would, then start again. The store in the data dir survives, so do the objects in it:
the agent starts their pods again. Start order (see `meshnet.cluster.plan`):

    check the host -> node namespace + veth -> unreachable routes -> API server (loopback)
    -> relay (API server for the node, ingress on loopback, DNS upstream) -> node kubeconfig
    -> kube-dns Endpoints -> [dockerd in the node] -> agent, proxy, dns, ingress in the node
    -> node Ready

A failure at any step tears down what was made and prints the failing process's log tail.
`down` stops the processes in reverse (the agent first stops its pods), kills whatever pod
process a crashed agent (or dockerd) left, and removes the namespace, the veth, the routes and the
/etc/netns entries it made. It needs root, as the agent does.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from meshnet.api.resources import lookup
from meshnet.client.kubeconfig import Kubeconfig, meshnet_data_dir
from meshnet.client.rest import RestClient
from meshnet.cluster import dockerd, hostnet, plan as planmod, supervisor as sup
from meshnet.cluster.plan import ClusterPlan, PlanError

from .errors import CLIError

READY_TIMEOUT_S = 60.0
STOP_ORDER = ("ingress", "dns", "proxy", "agent", "dockerd", "relay", "apiserver")
DESCRIPTION = ("Start a single-node meshnet cluster on this host: the API server on loopback, "
               "a node in its own network namespace (agent, proxy, DNS, ingress) joined to the "
               "host by one veth, and the ingress published on loopback. Needs root.")
EXAMPLES = """Examples:
  # Start (or check) the cluster; then use it
  meshctl up
  export KUBECONFIG=/var/lib/meshnet/admin.kubeconfig

  # Pods as docker containers (a dockerd of the cluster's own, in the node namespace)
  meshctl up --runtime docker

  # Non-default ports and a second cluster next to the first
  meshctl up --name lab2 --data-dir /tmp/lab2 --api-port 7443 --ingress-http-port 8080 \\
      --ingress-https-port 8443 --link-cidr 172.31.255.248/30"""


def default_data_dir() -> str:
    """As meshnet-apiserver's --data-dir default (its admin.kubeconfig is the one we use)."""
    return meshnet_data_dir()


def _data_dir_flag(p) -> None:
    p.add_argument("--data-dir", default=None,
                   help="cluster data: API server store and credentials, state, logs (default: "
                        "$MESHNET_DATA_DIR, else /var/lib/meshnet as root)")


def configure_up(p) -> None:
    _data_dir_flag(p)
    p.add_argument("--name", default=planmod.DEFAULT_NAME,
                   help="cluster name: the node namespace is NAME-node-1, the host veth NAME-h "
                        "(default meshnet)")
    p.add_argument("--api-port", type=int, default=planmod.DEFAULT_API_PORT,
                   help="API server port on 127.0.0.1 (default 6443)")
    p.add_argument("--ingress-http-port", type=int, default=planmod.DEFAULT_HTTP_PORT,
                   help="host loopback port of the ingress, HTTP (default 80)")
    p.add_argument("--ingress-https-port", type=int, default=planmod.DEFAULT_HTTPS_PORT,
                   help="host loopback port of the ingress, HTTPS (default 443)")
    p.add_argument("--link-cidr", default=planmod.DEFAULT_LINK_CIDR,
                   help="the /30 of the host-node veth: host end first, node second "
                        f"(default {planmod.DEFAULT_LINK_CIDR})")
    p.add_argument("--dns-upstream", default=None,
                   help="ADDR[:PORT] the cluster DNS forwards other names to, reached from the "
                        "host (default: the first nameserver of /etc/resolv.conf)")
    p.add_argument("--runtime", choices=planmod.RUNTIMES, default="netns",
                   help="netns (default): containers are processes in the pod's namespaces; "
                        "docker: real containers, through a dockerd the node runs on a socket "
                        "of its own with networking off (needs dockerd and busybox-static)")
    p.add_argument("--timeout", type=float, default=READY_TIMEOUT_S,
                   help="seconds to wait for each step (default 60)")


def configure_down(p) -> None:
    _data_dir_flag(p)


def _plan(args) -> ClusterPlan:
    upstream = args.dns_upstream
    if upstream is None:
        try:
            upstream = planmod.upstreams_from_resolv_conf(Path("/etc/resolv.conf").read_text())
        except OSError:
            upstream = ""
    try:
        return planmod.make_plan(
            name=args.name, data_dir=Path(args.data_dir or default_data_dir()).absolute(),
            api_port=args.api_port, http_port=args.ingress_http_port,
            https_port=args.ingress_https_port, link_cidr=args.link_cidr,
            dns_upstream=upstream, runtime=args.runtime)
    except PlanError as exc:
        raise CLIError(str(exc)) from None


def _need_root(verb: str) -> None:
    if os.geteuid() != 0:
        raise CLIError(f"meshctl {verb} needs root: it creates a network namespace, a veth and "
                       f"routes (run it with sudo)")


# ---------------------------------------------------------------------------------- up


class _Progress:
    def __init__(self, session):
        self.session = session
        self.t0 = time.monotonic()

    def step(self, text: str) -> None:
        self.session.out(f"  {text} ...")
        self.session.flush()
        self.t = time.monotonic()

    def done(self, text: str = "ok") -> None:
        self.session.out(f" {text} ({time.monotonic() - self.t:.1f}s)\n")
        self.session.flush()


def run_up(args, session) -> int:
    _need_root("up")
    plan = _plan(args)
    if plan.runtime == "docker" and shutil.which("dockerd") is None:
        raise CLIError("--runtime docker needs dockerd (apt-get install docker.io; keep the "
                       "system service off: `up` starts a dockerd of its own)")
    state = sup.State.load(plan)
    if state is not None:
        procs = state.processes
        if procs and all(sup.alive(r) for r in procs.values()) and \
                set(procs) == {s.name for s in plan.processes()}:
            session.out(f"meshnet cluster {state.data['name']} is already up "
                        f"(data dir {plan.data_dir}).\n")
            _summary(session, state)
            return 0
        session.out(f"Cleaning up the leftovers of an earlier run ({plan.data_dir}) ...\n")
        _teardown(session, state, crashed=True)
    progress = _Progress(session)
    session.out(f"Starting meshnet cluster {plan.name} (data dir {plan.data_dir}):\n")
    state = sup.State.new(plan)
    state.save()
    try:
        _bring_up(plan, state, progress, args.timeout)
    except (CLIError, hostnet.HostNetError, OSError, TimeoutError) as exc:
        session.out(" failed\n")
        session.err(f"error: {exc}")
        session.err("Cleaning up what was started ...")
        _teardown(session, state, crashed=True)
        raise CLIError("meshctl up failed; nothing was left behind (logs are in "
                       f"{plan.up_dir / 'logs'})") from None
    session.out(f"meshnet cluster {plan.name} is up in {time.monotonic() - progress.t0:.1f}s.\n")
    _summary(session, state)
    return 0


def _bring_up(plan: ClusterPlan, state: sup.State, progress: _Progress, timeout: float) -> None:
    specs = {s.name: s for s in plan.processes()}
    progress.step(f"node namespace {plan.netns}, veth {plan.host_veth} "
                  f"{plan.host_ip} <-> {plan.node_ip}")
    hostnet.check_free(plan)
    if hostnet.netns_exists(plan.netns) or hostnet.link_exists(plan.host_veth):
        raise CLIError(f"network namespace {plan.netns} or interface {plan.host_veth} exists "
                       f"but is not in {state.path}; another cluster uses --name {plan.name}? "
                       f"Pick another --name, or remove them")
    state.data.update(netns=plan.netns, host_veth=plan.host_veth)
    state.save()  # recorded before made: a crash in between is still cleaned up
    hostnet.create_link(plan)
    for cidr in plan.unreachable_ranges():
        if hostnet.add_unreachable(cidr):
            state.data["routes"].append(cidr)
            state.save()
    progress.done()

    progress.step(f"API server on {plan.api_url}")
    api = sup.start(plan, specs["apiserver"], state)
    client = wait_until(lambda: _api_client(plan, api), "the API server", api, timeout)
    progress.done()

    progress.step(f"relay: API server for the node at {plan.node_api_url}, ingress on "
                  f"127.0.0.1:{plan.http_port}/{plan.https_port}")
    relay = sup.start(plan, specs["relay"], state)
    wait_until(lambda: "relay ready" in Path(relay["log"]).read_text(errors="replace"),
               "the relay", relay, timeout)
    _write_node_kubeconfig(plan)
    wait_until(lambda: ensure_kube_dns(plan, client), "the kube-dns Service", api, timeout)
    progress.done()

    node_specs = [specs[n] for n in ("dockerd", "agent", "proxy", "dns", "ingress") if n in specs]
    progress.step(f"node {plan.node_name}: " + ", ".join(s.name for s in node_specs))
    recs = {}
    if "dockerd" in specs:  # the agent checks at start that dockerd answers
        recs["dockerd"] = sup.start(plan, specs["dockerd"], state)
        wait_until(lambda: ready_ok(specs["dockerd"].ready_url), f"dockerd ({plan.docker_socket})",
                   recs["dockerd"], timeout)
    recs.update({s.name: sup.start(plan, s, state) for s in node_specs if s.name not in recs})
    for s in node_specs:
        wait_until(lambda s=s: ready_ok(s.ready_url), f"meshnet-{s.name} ({s.ready_url})",
                   recs[s.name], timeout)
    wait_until(lambda: node_ready(client, plan.node_name), f"node {plan.node_name} Ready",
               recs["agent"], timeout)
    progress.done()
    client.close()


def wait_until(predicate, what: str, rec: dict, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except Exception:  # noqa: BLE001 - not yet: connection refused, 503, no file yet
            result = None
        if result:
            return result
        if not sup.alive(rec):
            raise CLIError(f"{what}: the process exited; last lines of {rec['log']}:\n"
                           f"{sup.log_tail(rec)}")
        if time.monotonic() > deadline:
            raise CLIError(f"timed out after {timeout:g}s waiting for {what}; last lines of "
                           f"{rec['log']}:\n{sup.log_tail(rec)}")
        time.sleep(0.1)


def _api_client(plan: ClusterPlan, rec: dict) -> RestClient | None:
    log = Path(rec["log"]).read_text(errors="replace")
    if "ready on" not in log.rsplit("--- ", 1)[-1]:
        return None
    conn = Kubeconfig.load(str(plan.admin_kubeconfig), {}).connection(None)
    client = RestClient(conn, timeout=5)
    client.get(lookup("namespaces"), "default")
    return client


def _write_node_kubeconfig(plan: ClusterPlan) -> None:
    """The admin kubeconfig with the server the node can reach (the relay on the veth), as
    JSON: the node's daemons then never load PyYAML."""
    doc = yaml.safe_load(plan.admin_kubeconfig.read_text())
    for cluster in doc.get("clusters") or []:
        cluster["cluster"]["server"] = plan.node_api_url
    plan.node_kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(plan.node_kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)


def ensure_kube_dns(plan: ClusterPlan, client: RestClient) -> bool:
    services, endpoints = lookup("services"), lookup("endpoints")
    svc = client.get(services, "kube-dns", "kube-system")
    if (svc.get("spec") or {}).get("selector"):
        client.patch(services, "kube-dns", {"spec": {"selector": None}}, "kube-system")
    want = plan.kube_dns_endpoints()
    try:
        current = client.get(endpoints, "kube-dns", "kube-system")
    except Exception:  # noqa: BLE001 - absent: create it
        client.create(endpoints, want, "kube-system")
        return True
    if current.get("subsets") != want["subsets"]:
        want["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        client.replace(endpoints, "kube-dns", want, "kube-system")
    return True


def ready_ok(url: str) -> bool:
    if url.startswith("unix:"):
        return dockerd.ping(url[len("unix:"):])
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def node_ready(client: RestClient, node: str) -> bool:
    obj = client.get(lookup("nodes"), node)
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _summary(session, state: sup.State) -> None:
    d = state.data
    procs = state.processes
    where = lambda n: "node" if procs.get(n, {}).get("in_node") else "host"  # noqa: E731
    lines = [f"  {n:<10} pid {r['pid']:<8} ({where(n)}, log {r['log']})"
             for n, r in procs.items()]
    session.out("Processes:\n" + "\n".join(lines) + "\n")
    session.out(
        f"Node {d['node_name']}: namespace {d['netns']}, InternalIP {d['node_ip']} "
        f"(host end {d['host_ip']} on {d['host_veth']}), runtime {d.get('runtime', 'netns')}\n"
        f"API server:  {d['api_url']}\n"
        f"Ingress:     http://127.0.0.1:{d['http_port']}  https://127.0.0.1:{d['https_port']}\n"
        f"Use it:      export KUBECONFIG={d['admin_kubeconfig']}; meshctl get nodes\n"
        f"Stop it:     meshctl down" + (f" --data-dir {Path(d['admin_kubeconfig']).parent}"
                                         if str(Path(d['admin_kubeconfig']).parent) !=
                                         default_data_dir() else "") + "\n")


# -------------------------------------------------------------------------------- down


def run_down(args, session) -> int:
    _need_root("down")
    data_dir = Path(args.data_dir or default_data_dir()).absolute()
    state = sup.State.load(data_dir)
    if state is None:
        session.out(f"No meshnet cluster in {data_dir} (nothing to stop).\n")
        return 0
    session.out(f"Stopping meshnet cluster {state.data.get('name')} ({data_dir}):\n")
    problems = _teardown(session, state, crashed=False)
    if problems:
        raise CLIError("meshctl down could not remove everything:\n  " + "\n  ".join(problems))
    session.out("Stopped; nothing is left on the host.\n")
    return 0


def _teardown(session, state: sup.State, *, crashed: bool) -> list[str]:
    """Stop the processes (reverse start order), then pods a dead agent left, then the
    network. Goes on after every error; returns them."""
    problems = []
    agent_was_alive = sup.alive(state.processes.get("agent", {}))
    # Node daemons first (the agent stops its pods while the API server still answers).
    order = [n for n in STOP_ORDER if n in state.processes] + \
        [n for n in state.processes if n not in STOP_ORDER]
    for name in order:
        rec = state.processes[name]
        try:
            result = sup.stop(name, rec)
        except OSError as exc:
            result = f"error: {exc}"
            problems.append(f"stopping {name} (pid {rec['pid']}): {exc}")
        session.out(f"  {name:<10} pid {rec['pid']:<8} {result}\n")
    if not agent_was_alive or crashed:
        problems += pod_leftovers(Path(state.data.get("agent_state", "")))
    if state.data.get("docker_dir"):  # containerd, shims, containers, mounts a killed one left
        problems += dockerd.leftovers(Path(state.data["docker_dir"]))
    problems += hostnet.remove(state.data.get("netns", ""), state.data.get("host_veth", ""),
                               state.data.get("routes", []))
    session.out(f"  removed namespace {state.data.get('netns') or '-'}, veth "
                f"{state.data.get('host_veth') or '-'}, routes "
                f"{', '.join(state.data.get('routes') or []) or '-'}\n")
    if not problems:
        state.remove()
    return problems


def pod_leftovers(agent_state: Path) -> list[str]:
    """What a killed agent leaves: its containers (recorded PIDs) and their /etc/netns and
    /run/netns names. Its pod directories stay: the next agent adopts them (same IPs)."""
    from meshnet.node.netconfig import pod_netns_name
    from meshnet.node.runtime import kill_recorded
    problems = []
    pods = agent_state / "pods"
    if not agent_state.name or not pods.is_dir():
        return problems
    for pod_dir in pods.iterdir():
        try:
            kill_recorded(pod_dir)
        except OSError as exc:
            problems.append(f"stopping the containers of pod {pod_dir.name}: {exc}")
        name = pod_netns_name(pod_dir.name)
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        run_path = Path("/run/netns") / name
        if run_path.exists():
            if hostnet.ip("netns", "del", name, check=False).returncode:
                run_path.unlink(missing_ok=True)
    return problems


# ------------------------------------------------------------------------------ status


def run_status(args, session) -> int:
    data_dir = Path(args.data_dir or default_data_dir()).absolute()
    state = sup.State.load(data_dir)
    if state is None:
        session.out(f"No meshnet cluster in {data_dir}: start one with `meshctl up`.\n")
        return 1
    d = state.data
    session.out(f"Cluster {d['name']} (data dir {data_dir}):\n")
    running = 0
    for name in STOP_ORDER[::-1]:
        rec = state.processes.get(name)
        if rec is None:
            continue
        ok = sup.alive(rec)
        running += ok
        session.out(f"  {name:<10} pid {rec['pid']:<8} {'running' if ok else 'NOT RUNNING'}\n")
    net_ok = hostnet.netns_exists(d.get("netns", "")) and hostnet.link_exists(
        d.get("host_veth", ""))
    session.out(f"  network    namespace {d['netns']} veth {d['host_veth']} "
                f"{d['host_ip']} <-> {d['node_ip']}: {'present' if net_ok else 'MISSING'}\n")
    ready = "unknown (API server not reachable)"
    try:
        conn = Kubeconfig.load(d["admin_kubeconfig"], {}).connection(None)
        client = RestClient(conn, timeout=3)
        ready = "Ready" if node_ready(client, d["node_name"]) else "NotReady"
        client.close()
    except Exception:  # noqa: BLE001 - status reports, it does not fail
        pass
    session.out(f"  node       {d['node_name']}: {ready}\n")
    session.out(f"API server: {d['api_url']}   ingress: http://127.0.0.1:{d['http_port']} "
                f"https://127.0.0.1:{d['https_port']}\n"
                f"KUBECONFIG={d['admin_kubeconfig']}\n")
    healthy = running == len(state.processes) and net_ok and ready == "Ready"
    return 0 if healthy else 1
