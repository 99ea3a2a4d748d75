"""Processes and state of `meshctl up`: start detached, find again from another shell, stop.

State lives in `<data-dir>/up/state.json` and is rewritten (atomically) before and after
every change, so `down`/`status` in another shell — or an `up` after a crash — see what
exists. A process is identified by PID *and* its start time (/proc/PID/stat field 22), so a
recycled PID is never signalled. Processes run in sessions of their own with stdout and
stderr in `<data-dir>/up/logs/<name>.log`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from .plan import ClusterPlan, ProcessSpec

STOP_GRACE_S = 10.0
AGENT_STOP_GRACE_S = 45.0  # the agent stops every pod first (each capped at its own grace)


def start_ticks(pid: int) -> str | None:
    """Start time of a live (non-zombie) process, None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def alive(rec: dict) -> bool:
    return bool(rec) and start_ticks(rec["pid"]) == rec["start"]


class State:
    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    def __repr__(self) -> str:
        procs = ",".join(n for n, r in self.processes.items() if alive(r))
        return f"<State {self.data.get('name')} netns={self.data.get('netns')} alive={procs}>"

    @classmethod
    def load(cls, plan_or_dir) -> "State | None":
        path = _path(plan_or_dir)
        try:
            return cls(path, json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    @classmethod
    def new(cls, plan: ClusterPlan) -> "State":
        return cls(_path(plan), {
            "name": plan.name, "netns": "", "host_veth": "", "routes": [], "processes": {},
            "flags": {"name": plan.name, "api_port": plan.api_port,
                      "http_port": plan.http_port, "https_port": plan.https_port,
                      "link_cidr": plan.link_cidr, "runtime": plan.runtime},
            "node_name": plan.node_name, "host_ip": plan.host_ip, "node_ip": plan.node_ip,
            "agent_state": str(plan.agent_state), "api_url": plan.api_url,
            "admin_kubeconfig": str(plan.admin_kubeconfig),
            "http_port": plan.http_port, "https_port": plan.https_port,
            "runtime": plan.runtime,
            "docker_dir": str(plan.docker_dir) if plan.runtime == "docker" else ""})

    @property
    def processes(self) -> dict:
        return self.data.setdefault("processes", {})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _path(plan_or_dir) -> Path:
    if isinstance(plan_or_dir, ClusterPlan):
        return plan_or_dir.up_dir / "state.json"
    return Path(plan_or_dir) / "up" / "state.json"


def start(plan: ClusterPlan, spec: ProcessSpec, state: State) -> dict:
    logs = plan.up_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{spec.name}.log"
    argv = list(spec.argv)
    if spec.net_only:  # nsenter execs the program too
        argv = ["nsenter", f"--net=/run/netns/{plan.netns}", *argv]
    elif spec.in_node:
        argv = ["ip", "netns", "exec", plan.netns, *argv]  # ip execs the program: same PID
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=str(plan.up_dir))
    ticks = None
    for _ in range(100):  # /proc appears with the fork; never None for a live child
        ticks = start_ticks(proc.pid)
        if ticks:
            break
        time.sleep(0.01)
    rec = {"pid": proc.pid, "start": ticks or "0", "log": str(log_path),
           "argv": argv, "in_node": spec.in_node}
    state.processes[spec.name] = rec
    state.save()
    proc.returncode = 0  # never wait()ed here: Popen's __del__ must not warn or reap it
    return rec


def stop(name: str, rec: dict) -> str:
    """SIGTERM, wait, SIGKILL (the whole session). Returns what happened, for the output."""
    if not alive(rec):
        return "not running"
    pid = rec["pid"]
    os.kill(pid, signal.SIGTERM)
    grace = AGENT_STOP_GRACE_S if name == "agent" else STOP_GRACE_S
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(rec):
            return "stopped"
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)  # its own session: pid == pgid
    except ProcessLookupError:
        pass
    for _ in range(100):
        if not alive(rec):
            break
        time.sleep(0.05)
    return f"killed after {grace:g}s"


def kill_all(pids, where: str) -> list[str]:
    """SIGKILL each PID (one already gone is fine); the failures, naming `where`."""
    problems = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except OSError as exc:
            problems.append(f"killing pid {pid} {where}: {exc}")
    return problems


def log_tail(rec: dict, lines: int = 15) -> str:
    try:
        text = Path(rec["log"]).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
