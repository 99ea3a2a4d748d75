"""The `netns` runtime: a container is a process tree inside its pod's network namespace.

Theory of operation
-------------------
`start()` (then `wait_started()`) writes the container's launch spec (argv, env, mounts,
workingDir, hostname) to the pod's state directory and asks the agent's container zygote
(`spawner.py` / `zygote.py`) to fork the container: the child enters the pod's namespaces,
mounts its volumes, appends stdout and stderr to `<pod-dir>/logs/<container>/<n>.log`
(n = restart count, so `--previous` is the file before) and execs the program — or, for the
built-in echo image, runs it without an exec. The forked child *is* the container's main
process: its PID is the container ID, it leads a session of its own (signals go to its process
group), `exec` enters its namespaces with nsenter.

Why a zygote: `ip netns exec` + a fresh launcher interpreter + the echo image's interpreter cost
~130 ms of CPU per container, which is what limited 100 pods started at once; a fork costs ~1.

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

from meshnet.node.images import Image, echo_argv, resolve_image
from meshnet.node.netconfig import ETC_NETNS, NETNS_RUN_DIR
from meshnet.node.spawner import Spawner, SpawnError, ZygoteProcess

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KILL_WAIT_S = 5.0
START_TIMEOUT_S = 30.0


@dataclass
class Container:
    """A running (or finished) container process."""
    pod_key: str
    name: str
    proc: "ZygoteProcess | FailedProcess"
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    ready_fd: int = -1  # read end of the container's close-on-exec pipe, until waited for

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
    owns_netns = True  # a pod's namespace lives as long as podnet's name and its processes

    def __init__(self, python: str = sys.executable):
        self.python = python
        self.spawner = Spawner(python)

    def __repr__(self) -> str:
        return f"<NetnsRuntime {self.spawner!r}>"

    async def close(self) -> None:
        await self.spawner.close()

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
        path = log_path(pod_dir, name, restart)
        # Off the event loop: new files and directories wait for the disk's journal.
        await asyncio.to_thread(_write_spec, pod_dir, spec_path, json.dumps(spec), path.parent)
        read_fd, write_fd = os.pipe()
        try:
            proc = await self.spawner.spawn(
                spec=spec_path, log_path=path, netns_path=str(NETNS_RUN_DIR / netns),
                etc_dir=str(ETC_NETNS / netns), echo=argv == echo_argv(self.python),
                ready_fd=write_fd)
        except SpawnError as exc:
            # Like runc failing to start a container: exit 128, the reason in its log.
            os.close(read_fd)
            with open(path, "ab") as f:
                f.write(f"meshnet: {exc}\n".encode())
            return Container(pod_key, name, FailedProcess(128), path)
        finally:
            os.close(write_fd)
        _record_pid(pod_dir, proc.pid)  # no await between the spawn and the Container
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

    def interactive_argv(self, container: Container, argv: list[str],
                         env: dict[str, str] | None = None,
                         tty: bool = False) -> tuple[list[str], dict[str, str]]:
        """The command line (and its environment) that runs `argv` in the container's
        network, mount and UTS namespaces: `nsenter` into the main process's."""
        if container.proc.returncode is not None:
            raise ProcessLookupError(f"container {container.name} is not running")
        return (["nsenter", f"--target={container.pid}", "--mount", "--net", "--uts", "--wd=/",
                 "--", *argv], {"PATH": DEFAULT_PATH, **(env or {})})

    async def exec(self, container: Container, argv: list[str], timeout_s: float = 60.0,
                   env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
        """Run `argv` in the container, no stdin, output collected (exec without streams)."""
        command, command_env = self.interactive_argv(container, argv, env)
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, env=command_env)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except asyncio.TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            return 124, b"", f"command timed out after {timeout_s:g}s\n".encode()
        return proc.returncode, out, err


class FailedProcess:
    """The process of a container that never started: exited with `code`."""

    def __init__(self, code: int):
        self.id, self.pid, self.returncode = "", 0, code

    async def wait(self) -> int:
        return self.returncode


async def _wait_exec(read_fd: int) -> None:
    """Until the container's program runs (or it died): EOF on its close-on-exec pipe.

    A raw fd watched with add_reader and closed here, exactly once. Not connect_read_pipe on
    os.fdopen(): uvloop closes the fd itself and the file object closes the same number again
    later — by then often another thread's new socket or epoll fd (EBADF/EINVAL in podnet)."""
    loop = asyncio.get_running_loop()
    eof = loop.create_future()
    loop.add_reader(read_fd, lambda: eof.done() or eof.set_result(None))  # nobody writes
    try:
        await asyncio.wait_for(eof, START_TIMEOUT_S)
    except asyncio.TimeoutError:
        pass  # a slow start: report it running anyway; the process itself is watched
    finally:
        loop.remove_reader(read_fd)
        os.close(read_fd)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the session leader's group: every process the container made
    except (ProcessLookupError, PermissionError):
        pass


def _write_spec(pod_dir: Path, spec_path: Path, text: str, log_dir: Path) -> None:
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(text)
    log_dir.mkdir(parents=True, exist_ok=True)
    (pod_dir / "pids").touch()  # created here, so `_record_pid` on the event loop only appends


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
