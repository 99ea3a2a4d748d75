"""`netns-lab/restore FILE`: docs/apiserver.md's disaster recovery, on the lab's control plane.

Theory of operation
-------------------
The lab's control plane (every API server and etcd member, and the store they hold) is
replaced by a new one filled from a `meshctl backup` file, on the same addresses, with the
same CA and admin token. The workers are not touched: their agents, proxies, DNS and ingress
keep serving from what they know while the control plane is gone, and reconnect by themselves
when it is back (their watches' resourceVersions belong to the lost store: 410 Gone, relist).

    check the file (a full restore into a throwaway SQLite store) and the credentials
    -> stop every API server and etcd member still running
    -> delete their data dirs (the store and the API servers' files)
    -> etcd members on empty data dirs (a new cluster), healthy
    -> `meshctl restore FILE --store etcd://...` (or `--data-dir` on SQLite) inside the first
       control plane's namespace
    -> ca.crt, ca.key, tokens.csv into every API server's data dir -> API servers, ready

Nothing is destroyed before the file and the credentials are known to be good. The
credentials are files, not store keys (docs/apiserver.md): `--credentials DIR` names where
they were kept with the backup; without it they are taken from the first API server's data
dir, when that survived. `--apiserver-arg` changes the restored API servers' flags (and is
remembered for later `netns-lab/start`s).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import time
from pathlib import Path

from meshnet.cli.errors import CLIError
from meshnet.cluster import supervisor as sup

from . import run
from .plan import LabPlan, merge_flags

DRY_RUN_DIR = "restore-check"
KEPT_CREDENTIALS_DIR = "restore-credentials"


def restore(plan: LabPlan, snapshot: Path, credentials: Path | None,
            apiserver_args: tuple[str, ...], out, timeout: float = run.READY_TIMEOUT_S) -> int:
    state, plan = run._loaded(plan)
    if apiserver_args:
        plan = dataclasses.replace(plan, apiserver_args=merge_flags(plan.apiserver_args,
                                                                    apiserver_args))
    snapshot = snapshot.absolute()
    t0 = time.monotonic()
    out(f"Restoring the control plane of lab {plan.name} from {snapshot}:\n")
    done = run._step(out, "checking the backup and the credentials")
    summary = _check(plan, snapshot)
    kept = _keep_credentials(plan, credentials)
    done()
    out(f"  the backup: {summary}\n")

    _remove_control_plane(plan, state, out)
    specs = plan.processes()
    members = plan.etcd_members()
    if members:
        done = run._step(out, f"new etcd: {', '.join(e.name for e in members)}")
        run.start_etcd(plan, state, [(m, s) for m, s in specs if run._role(s.name) == "etcd"],
                       timeout)
        done()
    apis = [(m, s) for m, s in specs if run._role(s.name) == "apiserver"]
    first = apis[0][0]
    done = run._step(out, f"meshctl restore in {first.netns}")
    restored = _meshctl_restore(plan, first, snapshot)
    done()
    out(f"  {restored}\n")
    for cp in plan.role("control-plane"):
        target = plan.member_dir(cp) / "apiserver"
        target.mkdir(parents=True, exist_ok=True)
        for name in run.SHARED_CREDENTIALS:
            shutil.copy2(kept / name, target / name)
    done = run._step(out, f"API servers: {', '.join(plan.api_urls())}")
    run.start_apiservers(plan, state, apis, timeout)
    state.data["plan"]["apiserver_args"] = list(plan.apiserver_args)
    state.save()
    done()
    shutil.rmtree(kept, ignore_errors=True)
    out(f"Control plane restored in {time.monotonic() - t0:.1f}s. The workers reconnect by "
        f"themselves (watch -> 410 Gone -> relist); netns-lab/status shows them.\n")
    return 0


def _remove_control_plane(plan: LabPlan, state: sup.State, out) -> None:
    """Stop every API server and etcd member still running (API servers first), then delete
    their data dirs: the store, and the API servers' certificates and kubeconfigs."""
    procs = state.processes
    old = [n for n in procs if run._role(n) in ("apiserver", "etcd")]
    for phase in ("apiserver", "etcd"):
        names = [n for n in old if run._role(n) == phase and sup.alive(procs[n])]
        if names:
            run._stop_many(names, procs, out)
    gone = [plan.member_dir(cp) / "apiserver" for cp in plan.role("control-plane")] + \
        [plan.member_dir(e.host) / f"etcd-{e.name}" for e in plan.etcd_members()]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    out(f"  deleted the old store and API server data: "
        f"{', '.join(str(g.relative_to(plan.data_dir)) for g in gone)}\n")


def _apiserver(plan: LabPlan) -> str:
    return str(Path(plan.python).parent / "meshnet-apiserver")


def _check(plan: LabPlan, snapshot: Path) -> str:
    """A whole restore into a throwaway SQLite store: the file is validated exactly as the
    real restore will do it (format, every record, count, sha256) before anything is
    destroyed."""
    if not snapshot.is_file():
        raise CLIError(f"{snapshot}: no such file")
    scratch = plan.data_dir / DRY_RUN_DIR
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        done = subprocess.run([_apiserver(plan), "--restore", str(snapshot), "--data-dir",
                               str(scratch)], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        why = lines[-1].removeprefix("meshnet-apiserver: ").removeprefix("error: ")
        raise CLIError(f"{snapshot} cannot be restored (nothing was changed): {why}")
    # "restored N keys from FILE (taken at revision R, T) into ...": what the backup holds.
    found = re.match(r"restored (\d+) keys from .* \(taken at (revision \d+, [^)]*)\)",
                     done.stdout.strip())
    return f"{found[1]} keys, taken at {found[2]}" if found else done.stdout.strip()


def _keep_credentials(plan: LabPlan, credentials: Path | None) -> Path:
    """ca.crt, ca.key and tokens.csv, copied aside (the API servers' data dirs go next)."""
    first = plan.role("control-plane")[0]
    source = credentials or plan.member_dir(first) / "apiserver"
    missing = [n for n in run.SHARED_CREDENTIALS if not (source / n).is_file()]
    if missing:
        where = f"--credentials {credentials}" if credentials else \
            f"the first API server's data dir ({source})"
        raise CLIError(f"{where} lacks {', '.join(missing)}: give --credentials DIR with the "
                       f"{', '.join(run.SHARED_CREDENTIALS)} kept with the backup "
                       f"(docs/apiserver.md); the workers' kubeconfig trusts that CA and "
                       f"carries that token. Nothing was changed.")
    kept = plan.data_dir / KEPT_CREDENTIALS_DIR
    kept.mkdir(mode=0o700, exist_ok=True)
    for name in run.SHARED_CREDENTIALS:
        shutil.copy2(source / name, kept / name)
    return kept


def _meshctl_restore(plan: LabPlan, cp, snapshot: Path) -> str:
    store = ["--store", plan.store] if plan.store else \
        ["--data-dir", str(plan.member_dir(cp) / "apiserver")]
    meshctl = str(Path(plan.python).parent / "meshctl")
    done = subprocess.run(["ip", "netns", "exec", cp.netns, meshctl, "restore", str(snapshot),
                           *store], capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise CLIError(f"meshctl restore: {done.stderr.strip()}; the control plane is down, "
                       f"run netns-lab/restore again once the cause is fixed")
    return done.stdout.strip()
