"""`meshctl backup FILE` and `meshctl restore FILE`: disaster recovery of the control plane.

backup: GET /meshnet/v1/snapshot from the current context's API server (a user in
system:masters): the whole store at one revision as versioned JSON lines. It is written to
FILE only once it arrived whole — its last line is the end line and the record count
matches — through FILE.partial, fsync and rename, so FILE is never a half backup.

restore: offline, on the machine that will run the new control plane: it runs
`meshnet-apiserver --restore FILE` with the store flags the API servers will use (--data-dir,
--store, --etcd-*); that validates the whole file before touching the store, refuses a store
that is not empty, fills it and exits. Start the API servers afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from meshnet.client.kubeconfig import meshnet_data_dir

from .context import Session
from .errors import CLIError

SNAPSHOT_PATH = "/meshnet/v1/snapshot"  # as meshnet.control.apiserver.backup
SNAPSHOT_KIND = "MeshnetStoreSnapshot"  # as meshnet.control.store.snapshot
END_KIND = "MeshnetStoreSnapshotEnd"

BACKUP_DESCRIPTION = """\
Write a consistent snapshot of the whole cluster store (every object, the allocated
ClusterIPs and NodePorts) to FILE ('-' for standard output), taken at one store revision by
the API server. Needs a user in the group system:masters. Restore it into a fresh control
plane with 'meshctl restore FILE'."""
BACKUP_EXAMPLES = """\
Examples:
  meshctl backup /var/backups/meshnet-$(date +%F).snapshot"""
RESTORE_DESCRIPTION = """\
Fill an empty store with a snapshot written by 'meshctl backup', before any API server runs
on it: the whole file is validated first, nothing is written if anything is wrong or the store
is not empty. Give the same --data-dir / --store / --etcd-* the API servers will use.
resourceVersions continue above the snapshot's (by --bump-revision), so clients that held
older ones relist."""
RESTORE_EXAMPLES = """\
Examples:
  # the embedded store of a new control plane
  meshctl restore backup.snapshot --data-dir /var/lib/meshnet
  # a fresh etcd prefix shared by several API servers
  meshctl restore backup.snapshot --store etcds://10.0.0.1:2379?prefix=/meshnet \\
      --etcd-cafile ca.crt --etcd-certfile client.crt --etcd-keyfile client.key"""


def configure_backup(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="where to write the snapshot ('-': stdout)")


def _check_complete(body: bytes) -> tuple[int, int]:
    """(revision, keys) of a snapshot that arrived whole; CLIError otherwise."""
    lines = body.split(b"\n")
    if len(lines) < 3 or lines[-1] != b"":
        raise CLIError("the snapshot arrived incomplete (the stream ended early); nothing was "
                       "written; try again")
    try:
        header, end = json.loads(lines[0]), json.loads(lines[-2])
    except ValueError:
        raise CLIError("the server's answer is not a meshnet store snapshot") from None
    records = len(lines) - 3
    if header.get("kind") != SNAPSHOT_KIND or end.get("kind") != END_KIND:
        raise CLIError("the server's answer is not a meshnet store snapshot (or it was cut "
                       "off); nothing was written")
    if end.get("keys") != records:
        raise CLIError(f"the snapshot holds {records} records but says {end.get('keys')}; "
                       "nothing was written; try again")
    return header.get("revision"), records


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds Secrets
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None


def run_backup(args, s: Session) -> int:
    response = s.client.request("GET", SNAPSHOT_PATH, accept="application/x-ndjson")
    revision, keys = _check_complete(response.body)
    if args.file == "-":
        s.out(response.body.decode("utf-8"))
        return 0
    path = Path(args.file)
    _write_atomically(path, response.body)
    s.out(f"Snapshot of revision {revision} ({keys} keys, {len(response.body):,} bytes) "
          f"written to {path}\n")
    return 0


def configure_restore(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="a snapshot written by 'meshctl backup'")
    p.add_argument("--data-dir", default=None,
                   help="the new API server's data dir (default: as meshnet-apiserver's: "
                        f"{meshnet_data_dir()})")
    p.add_argument("--store", default=None,
                   help="the new API servers' --store (default: the embedded store in the "
                        "data dir)")
    for flag, what in (("--etcd-cafile", "the CA of etcd's certificate"),
                       ("--etcd-certfile", "a client certificate for etcd"),
                       ("--etcd-keyfile", "its private key")):
        p.add_argument(flag, default=None, help=f"with an etcds:// store: {what}")
    p.add_argument("--bump-revision", default=None, metavar="N",
                   help="restored resourceVersions start this far above the snapshot's "
                        "(default 1000000000, as etcd's disaster-recovery guide uses)")


def _apiserver() -> str:
    beside = Path(sys.executable).parent / "meshnet-apiserver"
    found = str(beside) if beside.exists() else shutil.which("meshnet-apiserver")
    if not found:
        raise CLIError("meshnet-apiserver is not installed here; run the restore on a machine "
                       "of the new control plane")
    return found


def run_restore(args, s: Session) -> int:
    argv = [_apiserver(), "--restore", args.file]
    for flag in ("data_dir", "store", "etcd_cafile", "etcd_certfile", "etcd_keyfile",
                 "bump_revision"):
        value = getattr(args, flag)
        if value is not None:
            argv += ["--" + flag.replace("_", "-"), value]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.removeprefix("meshnet-apiserver: ").removeprefix("error: ")
                 for line in done.stderr.strip().splitlines() if line.strip()]
        raise CLIError("restore failed: " + (
            lines[-1] if lines else f"meshnet-apiserver exited with {done.returncode}"))
    s.out(done.stdout)
    return 0
