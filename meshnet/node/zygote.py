"""The container zygote: one small, long-lived process that forks every container.

    python -I -S .../meshnet/node/zygote.py <control-fd>

Started by the agent (`spawner.Spawner`) with one end of a SOCK_SEQPACKET socketpair. Starting
a container by `ip netns exec` + a fresh interpreter costs ~130 ms of CPU (most of it Python
starting and importing); a fork of this process costs ~1 ms. So the zygote imports, once, what
containers need before their program runs (launch.py: namespaces and mounts) and the built-in
echo image, then forks one child per request:

    agent -> zygote   {"id", "spec", "log", "netns", "etc", "echo"} + SCM_RIGHTS [ready fd]
    zygote -> agent   {"id", "pid"}  or  {"id", "error"}
    zygote -> agent   {"exit": pid, "code": returncode}     (negative: killed by that signal)

The child becomes the container (launch.become_container), then execs its program, or — for
the echo image, whose program is already imported here — runs it in the same process. The
zygote reaps its children and reports each exit, in order after that child's `pid` reply.
It never enters a pod's namespaces itself, holds no pod's files, and exits when the agent
closes the socket or dies (PR_SET_PDEATHSIG). Containers run in sessions of their own, so they
outlive it, as they outlive the agent (the next agent stops them by their recorded PIDs).
Standard library only; single-threaded (forking a threaded process is unsafe).
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "images")]

import echo  # noqa: E402  the built-in image, ready to run in a forked child
import launch  # noqa: E402

PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15
_libc = ctypes.CDLL(None)
MAX_MESSAGE_BYTES = 65536


def spawn(request: dict, ready_fd: int, own_fds: tuple[int, ...]) -> int:
    """Fork the container; the parent returns its PID, the child never returns."""
    pid = os.fork()
    if pid:
        return pid
    try:
        signal.set_wakeup_fd(-1)
        for fd in own_fds:  # the control socket and the wake-up pipe are the zygote's only
            os.close(fd)
        with open(request["spec"]) as f:
            spec = json.load(f)
        os.set_inheritable(ready_fd, False)  # closed by the exec: "started"
        launch.become_container(spec, request["log"], request["netns"], request["etc"])
        if request.get("echo"):
            # Its command line stays the zygote's; `ps -o comm` and top show this name.
            _libc.prctl(PR_SET_NAME, b"meshnet-echo")
            sys.argv = spec["argv"]
            code = echo.main(os.environ, ready=lambda: os.close(ready_fd))
            sys.stdout.flush()
            os._exit(code)
        launch.exec_program(spec)
    except BaseException as exc:  # noqa: BLE001 - a child must never return into the loop
        launch.fail(f"meshnet: container start failed: {exc!r}", launch.EXIT_SETUP)
    os._exit(launch.EXIT_SETUP)


def serve(control: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    own = (control.fileno(), wake_r, wake_w, sel.fileno())
    while True:
        for key, _ in sel.select():
            if key.fileobj is control:
                if not handle(control, own):
                    return
            else:
                os.read(wake_r, 4096)
        reap(control)


def handle(control: socket.socket, own_fds: tuple[int, ...]) -> bool:
    """One request; False when the agent has gone."""
    try:
        data, ancdata, _flags, _addr = control.recvmsg(
            MAX_MESSAGE_BYTES, socket.CMSG_SPACE(4 * 4))
    except InterruptedError:
        return True
    if not data:
        return False
    fds = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += list(memoryview(payload).cast("i"))
    reply: dict = {}
    try:
        request = json.loads(data)
        reply["id"] = request["id"]
        if not fds:
            raise ValueError("no ready fd")
        pid = spawn(request, fds[0], own_fds)
        reply["pid"] = pid
    except (ValueError, KeyError, OSError) as exc:
        reply["error"] = str(exc)
    finally:
        for fd in fds:
            os.close(fd)
    send(control, reply)
    return True


def reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send(control, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def send(control: socket.socket, message: dict) -> None:
    control.sendall(json.dumps(message).encode())


def main() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _libc.prctl(PR_SET_NAME, b"mn-zygote")
    # The agent stops us by closing the socket; a terminal's Ctrl-C is for the agent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    control = socket.socket(fileno=int(sys.argv[1]))
    control.set_inheritable(False)
    # Only stdio and the control socket: nothing else we were handed (uvloop's spawn leaves
    # duplicates of the agent's stdio) may reach a container, which never execs if echo.
    os.closerange(3, control.fileno())
    os.closerange(control.fileno() + 1, os.sysconf("SC_OPEN_MAX"))
    if os.getppid() == 1:
        return  # the agent died before PR_SET_PDEATHSIG took effect
    try:
        serve(control)
    except (BrokenPipeError, ConnectionResetError):
        pass


if __name__ == "__main__":
    main()
