"""Stale pid files of dockerd and its containerd: after a SIGKILL, `meshctl up` must be able to
start them again (a killed process may linger as a zombie nobody reaps)."""

from __future__ import annotations

import os
import subprocess
import time

from meshnet.cluster import dockerd


def test_stale_pidfiles_of_a_zombie_a_gone_and_a_live_process(tmp_path):
    docker_pid = tmp_path / "docker.pid"
    containerd_pid = tmp_path / "exec" / "containerd" / "containerd.pid"
    containerd_pid.parent.mkdir(parents=True)
    zombie = subprocess.Popen(["true"])  # exits and is not waited for: a zombie
    try:
        time.sleep(0.3)
        cases = [(str(zombie.pid), True), ("999999999", True), ("", True), ("junk", True),
                 (str(os.getpid()), False)]
        for text, stale in cases:
            for pidfile in (docker_pid, containerd_pid):
                pidfile.write_text(text)
            expected = [docker_pid, containerd_pid] if stale else []
            assert dockerd.stale_pidfiles(tmp_path) == expected, text
        assert dockerd.stale_pidfiles(tmp_path / "none") == []
        docker_pid.write_text(str(zombie.pid))
        containerd_pid.write_text(str(os.getpid()))
        assert dockerd.leftovers(tmp_path) == []
        assert not docker_pid.exists(), "leftovers() removes a stale pid file"
        assert containerd_pid.exists(), "a live process's pid file stays"
    finally:
        zombie.wait()
