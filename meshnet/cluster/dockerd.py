"""The dockerd of `meshctl up --runtime docker`: readiness, and what a killed one leaves.

dockerd runs in the node's network namespace with everything under one directory
(`ClusterPlan.docker_dir`: API socket, data root, exec root, pid file), so that directory is
how its pieces are found again:

- containerd (started by dockerd) and one `containerd-shim` per container name the exec root
  on their command lines; they outlive a SIGKILLed dockerd by design.
- A container's processes outlive their killed shim (runc reparents them). They are found by
  the container IDs under `<data-root>/containers/`, which name their cgroup.
- Overlay and bind mounts under the directory stay mounted after a crash.

`leftovers()` kills exactly those (by PID, never by name), unmounts those mounts and removes
the pid file of a dockerd that is gone. After a clean stop (the agent removed its containers,
then dockerd stopped containerd) it finds nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from . import supervisor

PING_TIMEOUT_S = 2.0


def ping(sock_path: str) -> bool:
    """dockerd answers `GET /_ping` on its API socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(PING_TIMEOUT_S)
        s.connect(sock_path)
        s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _processes() -> dict[int, tuple[bytes, str]]:
    """pid -> (command line, cgroup file) of every process but this one."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                out[int(d.name)] = ((d / "cmdline").read_bytes(), (d / "cgroup").read_text())
            except OSError:
                pass  # gone meanwhile
    return out


def container_ids(docker_dir: Path) -> set[str]:
    try:
        return {p.name for p in (docker_dir / "data" / "containers").iterdir()
                if len(p.name) == 64}
    except FileNotFoundError:
        return set()


def leftover_pids(docker_dir: Path) -> list[int]:
    """containerd and shims naming the directory, and the processes of its containers."""
    ids = container_ids(docker_dir)
    mark = str(docker_dir).encode() + b"/"
    pids = []
    for pid, (cmdline, cgroup) in _processes().items():
        if mark in cmdline or any(cid in cgroup for cid in ids):
            pids.append(pid)
    return pids


def mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f]
    prefix = str(root) + "/"
    return [t for t in targets if t.startswith(prefix)]


def _alive(pid: int) -> bool:
    """Running, not a zombie: a SIGKILLed dockerd stays a zombie where nobody reaps orphans
    (PID 1 of a container often does not), and dockerd counts that as running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# dockerd's own, and the containerd it supervises (under its exec root): each refuses to start,
# or waits for a process that is not there, while its pid file names a process that "exists".
PIDFILES = ("docker.pid", "exec/containerd/containerd.pid")


def stale_pidfiles(docker_dir: Path) -> list[Path]:
    """The pid files under `docker_dir` whose process is gone or a zombie."""
    stale = []
    for name in PIDFILES:
        pidfile = docker_dir / name
        try:
            text = pidfile.read_text().strip()
        except FileNotFoundError:
            continue
        pid = int(text) if text.isdigit() else 0
        if not pid or not _alive(pid):
            stale.append(pidfile)
    return stale


def leftovers(docker_dir: Path) -> list[str]:
    """SIGKILL what a killed dockerd left running and unmount its mounts; the problems."""
    problems = []
    for stale in stale_pidfiles(docker_dir):
        stale.unlink(missing_ok=True)
    problems += supervisor.kill_all(leftover_pids(docker_dir), f"of dockerd in {docker_dir}")
    for target in reversed(mounts_under(docker_dir)):  # innermost first
        proc = subprocess.run(["umount", "-l", target], capture_output=True, text=True)
        if proc.returncode != 0 and target in mounts_under(docker_dir):
            problems.append(f"umount {target}: {proc.stderr.strip()}")
    return problems
