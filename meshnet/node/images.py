"""Built-in images: what an image reference means on the netns runtime (no registry).

The netns runtime has no root filesystems: an image is an entrypoint, default arguments,
environment defaults and directories that must be private to the container (so two nginx pods
do not share /run/nginx.pid). Known images:

    meshnet/echo        HTTP echo (JSON), TCP and UDP echo: images/echo.py, the agent's python
                        (the netns runtime's zygote runs it in a forked child, no exec)
    busybox, meshnet/host   the host's programs (default command `sh`); for `command:` pods
    nginx               the host's /usr/sbin/nginx when installed, `daemon off`

Anything else fails like a registry miss (ErrImagePull). Tags and `docker.io/library/` are
ignored: `nginx:1.25` is the host's nginx, whatever its version.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from meshnet.node.envconfig import expand
from meshnet.node.errors import ImagePullError

ECHO_SCRIPT = Path(__file__).parent / "images" / "echo.py"
NGINX = "/usr/sbin/nginx"


@dataclass(frozen=True)
class Image:
    ref: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    private_dirs: tuple[str, ...] = ()
    downward_env: bool = False  # POD_NAME, POD_NAMESPACE, POD_IP, NODE_NAME as image defaults

    def __repr__(self) -> str:
        return f"<Image {self.ref} {' '.join(self.entrypoint + self.cmd)}>"


def normalize(ref: str) -> str:
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    for prefix in ("docker.io/library/", "docker.io/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name


def echo_argv(python: str) -> list[str]:
    """The echo image's entrypoint. Standard library only: no `site`, no environment."""
    return [python, "-I", "-S", str(ECHO_SCRIPT)]


def resolve_image(ref: str, *, python: str = sys.executable, nginx: str = NGINX) -> Image:
    name = normalize(ref)
    if name in ("meshnet/echo", "echo"):
        return Image(ref, tuple(echo_argv(python)), env=(("PYTHONDONTWRITEBYTECODE", "1"),),
                     downward_env=True)
    if name in ("busybox", "meshnet/host"):
        return Image(ref, (), ("sh",))
    if name == "nginx":
        if not os.access(nginx, os.X_OK):
            raise ImagePullError(f'Failed to pull image "{ref}": nginx is mapped to the host\'s '
                                 f'{nginx}, which is not installed (apt-get install nginx)')
        return Image(ref, (nginx,), ("-g", "daemon off;"),
                     private_dirs=("/run", "/var/log/nginx", "/var/lib/nginx"))
    raise ImagePullError(f'Failed to pull image "{ref}": the netns runtime has no registry; '
                         f'built-in images are meshnet/echo, busybox, meshnet/host and nginx')


def container_argv(image: Image, container: dict, env: dict[str, str]) -> list[str]:
    """Kubernetes' rule: `command` replaces the entrypoint (and drops the image's arguments),
    `args` replaces the arguments; `$(VAR)` expands from the container's environment."""
    command, args = container.get("command"), container.get("args")
    if command:
        argv = list(command) + list(args or [])
    else:
        argv = list(image.entrypoint) + list(args if args is not None else image.cmd)
    argv = [expand(a, env) for a in argv]
    if not argv:
        raise ImagePullError(f'image "{image.ref}" has no entrypoint: set command')
    return argv
