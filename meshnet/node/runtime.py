"""The `netns` runtime: a container is a process tree inside its pod's network namespace.

Theory of operation
-------------------
`start()` (then `wait_started()`) writes the container's launch spec (argv, env, mounts, workingDir, hostname) to the
pod's state directory and runs `ip netns exec <pod-netns> python -I -S launch.py SPEC`
in a session of its own, stdout and stderr appended to `<pod-dir>/logs/<container>/<n>.log`
(n = restart count, so `--previous` is the file before). Because `ip netns exec` and the
launcher both exec, the process we started *is* the container's main process: its PID is the
container ID, signals go to its process group, `exec` enters its namespaces with nsenter.

The runtime keeps no state of its own besides the PIDs it records in `<pod-dir>/pids`, so an
agent that restarts can stop what an earlier instance started (and only that).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from meshnet.node.images import Image, resolve_image

# The launcher imports only the standard library: run it by path, isolated and without `site`
# (no .pth processing, no package import), which cuts its start from ~30 ms to ~7 ms per
# container — a large share of pod start latency when many pods start at once.
LAUNCHER = str(Path(__file__).with_name("launch.py"))

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KILL_WAIT_S = 5.0
START_TIMEOUT_S = 30.0


@dataclass
class Container:
    """A running (or finished) container process."""
    pod_key: str
    name: str
    proc: asyncio.subprocess.Process
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    ready_fd: int = -1  # read end of the launcher's close-on-exec pipe, until waited for

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def container_id(self) -> str:
        return f"netns://{self.pid}"

    def __repr__(self) -> str:
        state = "running" if self.proc.returncode is None else f"exited {self.proc.returncode}"
        return f"<Container {self.pod_key}/{self.name} pid={self.pid} {state}>"


def log_path(pod_dir: Path, container: str, restart: int) -> Path:
    return pod_dir / "logs" / container / f"{restart}.log"


def log_paths(pod_dir: Path, container: str) -> list[Path]:
    """The container's log files, oldest first."""
    d = pod_dir / "logs" / container
    if not d.is_dir():
        return []
    return sorted(d.glob("*.log"), key=lambda p: int(p.stem))


def exit_status(returncode: int) -> tuple[int, int | None]:
    """(exitCode, signal) as Kubernetes shows them: a signal N is exit code 128+N."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


class NetnsRuntime:
    """The interface every runtime has (docker_runtime.DockerRuntime is the other one)."""

    host_mount_targets = True  # no root filesystems: a mountPath must exist on the host

    def __init__(self, python: str = sys.executable):
        self.python = python

    def __repr__(self) -> str:
        return "<NetnsRuntime>"

    async def resolve_image(self, ref: str) -> Image:
        return resolve_image(ref, python=self.python)

    async def create_sandbox(self, *, uid: str, pod_key: str, hostname: str) -> None:
        """Nothing holds the pod's namespaces but the named netns podnet creates."""

    async def remove_sandbox(self, uid: str) -> None:
        pass

    async def remove_leftovers(self) -> int:
        return 0  # an earlier agent's processes are found by their pod's `pids` file instead

    async def start(self, *, pod_key: str, pod_dir: Path, netns: str, name: str,
                    restart: int, argv: list[str], env: dict[str, str], working_dir: str,
                    mounts: list[tuple[str, str, bool]], hostname: str,
                    image: str = "") -> Container:
        full_env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, **env}
        spec = {"argv": argv, "env": full_env, "mounts": mounts,
                "workingDir": working_dir, "hostname": hostname}
        spec_path = pod_dir / "containers" / f"{name}.json"
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(json.dumps(spec))
        path = log_path(pod_dir, name, restart)
        path.parent.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        try:
            with open(path, "ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    "ip", "netns", "exec", netns, self.python, "-I", "-S", LAUNCHER,
                    str(spec_path), str(write_fd), stdin=asyncio.subprocess.DEVNULL,
                    stdout=log, stderr=log, start_new_session=True, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        _record_pid(pod_dir, proc.pid)
        return Container(pod_key, name, proc, path, ready_fd=read_fd)

    async def wait_started(self, container: Container) -> None:
        """Until the program has replaced the launcher: its mounts are in place."""
        if container.ready_fd >= 0:
            fd, container.ready_fd = container.ready_fd, -1
            await _wait_exec(fd)

    async def stop(self, container: Container, grace_s: float) -> int:
        """SIGTERM the container's process group, SIGKILL after `grace_s`; the exit status."""
        proc = container.proc
        if container.ready_fd >= 0:
            os.close(container.ready_fd)
            container.ready_fd = -1
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), max(grace_s, 0.0))
            except asyncio.TimeoutError:
                _signal_group(proc.pid, signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), KILL_WAIT_S)
        # Children that outlived the main process (a shell's background jobs) go too.
        _signal_group(proc.pid, signal.SIGKILL)
        return proc.returncode

    async def exec(self, container: Container, argv: list[str], timeout_s: float = 60.0,
                   env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
        """Run `argv` in the container's network, mount and UTS namespaces (kubectl exec)."""
        if container.proc.returncode is not None:
            raise ProcessLookupError(f"container {container.name} is not running")
        proc = await asyncio.create_subprocess_exec(
            "nsenter", f"--target={container.pid}", "--mount", "--net", "--uts", "--wd=/",
            "--", *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
            env={"PATH": DEFAULT_PATH, **(env or {})})
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except asyncio.TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            return 124, b"", f"command timed out after {timeout_s:g}s\n".encode()
        return proc.returncode, out, err


async def _wait_exec(read_fd: int) -> None:
    """Until the launcher has exec'd the program (or died): EOF on its close-on-exec pipe."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0))
    try:
        await asyncio.wait_for(reader.read(), START_TIMEOUT_S)
    except asyncio.TimeoutError:
        pass  # a slow start: report it running anyway; the process itself is watched
    finally:
        transport.close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the session leader's group: every process the container made
    except (ProcessLookupError, PermissionError):
        pass


def _record_pid(pod_dir: Path, pid: int) -> None:
    with open(pod_dir / "pids", "a") as f:
        f.write(f"{pid} {_start_ticks(pid)}\n")


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks: a PID plus this identifies one process, so a
    reused PID is never signalled by mistake."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def kill_recorded(pod_dir: Path) -> int:
    """SIGKILL the process groups an earlier agent recorded for this pod (only those whose PID
    still names the same process). Returns how many were alive."""
    alive = 0
    try:
        lines = (pod_dir / "pids").read_text().split("\n")
    except FileNotFoundError:
        return 0
    for line in lines:
        parts = line.split()
        if len(parts) != 2:
            continue
        pid, ticks = int(parts[0]), parts[1]
        if _start_ticks(pid) == ticks and ticks != "0":
            alive += 1
            _signal_group(pid, signal.SIGKILL)
    (pod_dir / "pids").unlink(missing_ok=True)
    return alive
