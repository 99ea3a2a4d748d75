"""Built-in images and Kubernetes' command/args rules."""

import pytest

from meshnet.node.errors import ImagePullError
from meshnet.node.images import ECHO_SCRIPT, container_argv, normalize, resolve_image

NORMALIZE = [
    ("tag dropped", "nginx:1.25", "nginx"),
    ("docker.io/library prefix dropped", "docker.io/library/busybox:1.36", "busybox"),
    ("digest dropped", "meshnet/echo@sha256:abc", "meshnet/echo"),
    ("registry port is not a tag", "localhost:5000/app", "localhost:5000/app"),
]


@pytest.mark.parametrize("desc,ref,expected", NORMALIZE, ids=[c[0] for c in NORMALIZE])
def test_normalize(desc, ref, expected):
    assert normalize(ref) == expected


ECHO = resolve_image("meshnet/echo:latest", python="/py")
SHELL = resolve_image("busybox")
ARGV = [
    ("image defaults", ECHO, {}, {}, ["/py", "-I", "-S", str(ECHO_SCRIPT)]),
    ("args replace the image's arguments", SHELL, {"args": ["-c", "true"]}, {},
     ["-c", "true"]),
    ("command replaces the entrypoint", ECHO, {"command": ["sleep"], "args": ["1"]}, {},
     ["sleep", "1"]),
    ("$(VAR) expands from the environment", SHELL,
     {"command": ["echo", "$(GREETING)"]}, {"GREETING": "hi"}, ["echo", "hi"]),
]


@pytest.mark.parametrize("desc,image,container,env,expected", ARGV, ids=[c[0] for c in ARGV])
def test_container_argv(desc, image, container, env, expected):
    assert container_argv(image, container, env) == expected


def test_echo_gets_the_downward_env():
    assert ECHO.downward_env and not SHELL.downward_env


def test_unknown_image_is_err_image_pull():
    with pytest.raises(ImagePullError, match='Failed to pull image "example.com/x:1"') as info:
        resolve_image("example.com/x:1")
    assert info.value.reason == "ErrImagePull"


def test_nginx_needs_the_host_binary(tmp_path):
    with pytest.raises(ImagePullError, match="apt-get install nginx"):
        resolve_image("nginx", nginx=str(tmp_path / "nginx"))
    fake = tmp_path / "nginx"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    image = resolve_image("nginx:1.25", nginx=str(fake))
    assert image.entrypoint == (str(fake),) and "/run" in image.private_dirs
