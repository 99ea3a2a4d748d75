"""Becoming a container: the last steps before a container's program runs.

Runs in a child the zygote (zygote.py) has just forked for one container, in the agent's mount
namespace. `become_container()`
  1. starts a session of its own (signals go to the container's process group), with stdout
     and stderr on the container's log file and stdin on /dev/null,
  2. enters the pod's network namespace (`setns` on /run/netns/<pod-netns>),
  3. unshares a mount and a UTS namespace and makes every mount private, so nothing mounted
     here is seen by the node or by another pod (and nothing the node mounts later leaks in),
  4. does what `ip netns exec` does: /sys remounted for the pod's network namespace, each file
     of /etc/netns/<pod-netns>/ (resolv.conf) bind-mounted over /etc/,
  5. sets the hostname, bind-mounts each volume at its mountPath (read-only ones remounted
     MS_RDONLY), changes to workingDir.
Then the caller execs the program, or for the built-in echo image runs it in this process.
The `ready` fd is close-on-exec: the agent sees EOF exactly when the program has replaced
the launcher (mounts done), which is when the container counts as started.
Failures print the reason to the container log and exit 127 (program not found) or 128 (any
other set-up error), as runc does. Standard library only (the zygote runs with -I -S).
"""

from __future__ import annotations

import ctypes
import os
import signal

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
EXIT_NOT_FOUND, EXIT_SETUP = 127, 128

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, flags: int, fstype: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(),
                       fstype.encode() if fstype else None, flags, None),
           f"mount {source} on {target}")


def redirect(log_path: str) -> None:
    """stdin from /dev/null, stdout and stderr appended to the container's log."""
    null = os.open("/dev/null", os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


def enter_pod(netns_path: str, etc_dir: str) -> None:
    """The pod's network namespace, private mount and UTS namespaces, its /sys and /etc."""
    fd = os.open(netns_path, os.O_RDONLY)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {netns_path}")
    finally:
        os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    mount("none", "/", MS_REC | MS_PRIVATE)
    # sysfs shows the network devices of the namespace that mounts it (iproute2 netns exec).
    flags = MS_RDONLY if not os.access("/sys", os.W_OK) else 0
    if _libc.umount2(b"/sys", MNT_DETACH) == 0:
        mount(os.path.basename(netns_path), "/sys", flags, "sysfs")
    if os.path.isdir(etc_dir):
        for entry in sorted(os.listdir(etc_dir)):
            source, target = os.path.join(etc_dir, entry), os.path.join("/etc", entry)
            if os.path.exists(target):
                mount(source, target, MS_BIND)


def setup(spec: dict) -> None:
    """Hostname, volumes, working directory (inside the namespaces `enter_pod` made)."""
    hostname = spec.get("hostname", "")[:63].encode()
    if hostname:
        _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
    for source, target, read_only in spec.get("mounts", []):
        if not os.path.exists(target):
            raise OSError(f"mountPath {target} does not exist (the agent creates it)")
        mount(source, target, MS_BIND | MS_REC)
        if read_only:
            mount(source, target, MS_BIND | MS_REMOUNT | MS_RDONLY)
    os.chdir(spec.get("workingDir") or "/")


def become_container(spec: dict, log_path: str, netns_path: str, etc_dir: str) -> None:
    """Steps 1-5 in a freshly forked child. Exits (never raises) on failure."""
    os.setsid()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)  # ignored dispositions would survive the exec
    try:
        redirect(log_path)
    except OSError:
        os._exit(EXIT_SETUP)
    try:
        enter_pod(netns_path, etc_dir)
        setup(spec)
    except OSError as exc:
        fail(f"meshnet: container set-up failed: {exc}", EXIT_SETUP)
    os.environ.clear()
    os.environ.update(spec["env"])


def exec_program(spec: dict) -> None:
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as exc:
        fail(f"meshnet: exec {argv[0]!r}: {exc.strerror}",
             EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_SETUP)


def fail(message: str, code: int) -> None:
    try:
        os.write(2, (message + "\n").encode())
    finally:
        os._exit(code)
