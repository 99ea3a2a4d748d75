"""The container launcher: the last step before a container's program runs.

    ip netns exec <pod-netns> python -I -S .../meshnet/node/launch.py <spec.json> <ready-fd>

`ip netns exec` has already entered the pod's network namespace, given the process a fresh
mount namespace (slave of the host's, so nothing mounted here leaks out) and bind-mounted
`/etc/netns/<pod-netns>/resolv.conf` over /etc/resolv.conf. This process then
  1. unshares the mount namespace again and makes it private (`unshare -m` +
     `mount --make-rprivate /`), so the pod's volumes exist only for this container,
  2. unshares UTS and sets the hostname to the pod's hostname,
  3. bind-mounts each volume at its mountPath (read-only ones remounted MS_RDONLY) and a fresh
     per-container directory over each of the image's private directories,
  4. changes to workingDir and execs the program with the container's environment.
The `--ready-fd` pipe is close-on-exec: the agent sees EOF exactly when the program has
replaced the launcher (mounts done), which is when the container counts as started.
It never returns to Python once the exec succeeds; failures exit 127 (program not found) or
128 (any other set-up error) with the reason on stderr — the container log — as runc does.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, flags: int) -> None:
    _check(_libc.mount(source.encode(), target.encode(), None, flags, None),
           f"mount {source} on {target}")


def setup(spec: dict) -> None:
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    mount("none", "/", MS_REC | MS_PRIVATE)
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


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    ready_fd = int(sys.argv[2]) if len(sys.argv) > 2 else -1
    if ready_fd >= 0:
        os.set_inheritable(ready_fd, False)  # closed by the exec: the agent's "started" signal
    try:
        setup(spec)
    except OSError as exc:
        print(f"meshnet: container set-up failed: {exc}", file=sys.stderr, flush=True)
        sys.exit(128)
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as exc:
        print(f"meshnet: exec {argv[0]!r}: {exc.strerror}", file=sys.stderr, flush=True)
        sys.exit(127 if isinstance(exc, FileNotFoundError) else 128)


if __name__ == "__main__":
    main()
