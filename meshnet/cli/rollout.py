"""`meshctl scale` and `meshctl rollout status|undo|history`, in kubectl's words.

The decisions are pure and tested table-first: `rollout_status_message` is kubectl's
DeploymentStatusViewer (which line to print, and whether the rollout is done), `history_rows`
and `undo_target` read a Deployment's ReplicaSets the way kubectl's rollout history and undo
do. The commands around them only talk to the API server:

- scale: a merge patch of the `scale` subresource (`{"spec": {"replicas": N}}`);
- rollout status: watch the one Deployment (fieldSelector metadata.name) and print each new
  message until it says "successfully rolled out", the deadline passes (`--timeout`), or the
  Progressing condition reports ProgressDeadlineExceeded;
- rollout undo: like `kubectl rollout undo`, client-side — a JSON patch replacing the
  Deployment's `spec.template` with the chosen ReplicaSet's template minus its
  `pod-template-hash` label. The Deployment controller then finds that ReplicaSet "new" again.
"""

from __future__ import annotations

import argparse
import copy
import time

from meshnet.api.resources import lookup
from meshnet.client.errors import ApiError

from .context import Session, parse_duration
from .errors import CLIError, Reported, api_error_text
from .tabwriter import format_table

HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
SCALABLE = ("deployments", "replicasets", "statefulsets")

SCALE_DESCRIPTION = ("Set a new size for a deployment, replica set or stateful set.")
SCALE_EXAMPLES = """Examples:
  # Scale a deployment named 'web' to 3 replicas
  meshctl scale deployment web --replicas=3

  # Scale a stateful set, naming it as TYPE/NAME
  meshctl scale statefulset/db --replicas=5"""
ROLLOUT_EXAMPLES = """Examples:
  meshctl rollout status deployment/web
  meshctl rollout history deployment/web
  meshctl rollout undo deployment/web --to-revision=2"""


# -- the pure part ------------------------------------------------------------------------------


def rollout_status_message(deploy: dict) -> tuple[str, bool]:
    """(the line kubectl prints, done) for a Deployment (kubectl's DeploymentStatusViewer).
    Raises CLIError when the rollout exceeded its progress deadline."""
    name = deploy["metadata"]["name"]
    spec, status = deploy.get("spec") or {}, deploy.get("status") or {}
    if deploy["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return "Waiting for deployment spec update to be observed...", False
    progressing = next((c for c in status.get("conditions") or ()
                        if c.get("type") == "Progressing"), {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        raise CLIError(f'deployment "{name}" exceeded its progress deadline')
    replicas = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {updated} out of '
                f'{replicas} new replicas have been updated...'), False
    if total > updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {total - updated} old '
                f'replicas are pending termination...'), False
    if available < updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} '
                f'updated replicas are available...'), False
    return f'deployment "{name}" successfully rolled out', True


def revision_of(obj: dict) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(
            REVISION_ANNOTATION) or 0)
    except ValueError:
        return 0


def owned_replica_sets(deploy: dict, replica_sets: list[dict]) -> list[dict]:
    uid = deploy["metadata"].get("uid")
    return [rs for rs in replica_sets
            if any(r.get("uid") == uid and r.get("controller")
                   for r in (rs.get("metadata") or {}).get("ownerReferences") or ())]


def history_rows(deploy: dict, replica_sets: list[dict]) -> list[list[str]]:
    rows = [["REVISION", "CHANGE-CAUSE"]]
    for rs in sorted(owned_replica_sets(deploy, replica_sets), key=revision_of):
        rev = revision_of(rs)
        if rev <= 0:
            continue
        cause = ((rs["metadata"].get("annotations") or {}).get(CHANGE_CAUSE_ANNOTATION)
                 or "<none>")
        rows.append([str(rev), cause])
    return rows


def template_without_hash(template: dict) -> dict:
    out = copy.deepcopy(template or {})
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return out


def undo_target(deploy: dict, replica_sets: list[dict], to_revision: int) -> dict:
    """The ReplicaSet to roll back to: revision to_revision, or (0) the one before the
    current one. CLIError in kubectl's words when there is none."""
    name = deploy["metadata"]["name"]
    by_revision = {revision_of(rs): rs for rs in owned_replica_sets(deploy, replica_sets)
                   if revision_of(rs) > 0}
    if to_revision:
        if to_revision not in by_revision:
            raise CLIError(f"unable to find specified revision {to_revision} in history")
        return by_revision[to_revision]
    revisions = sorted(by_revision)
    if len(revisions) < 2:
        raise CLIError(f'no rollout history found for deployment "{name}"')
    return by_revision[revisions[-2]]


def kind_ref(info) -> str:
    """`deployment.apps`, as kubectl names an object in its messages."""
    return f"{info.singular}.{info.group}" if info.group else info.singular


# -- scale -------------------------------------------------------------------------------------


def configure_scale(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="(TYPE NAME | TYPE/NAME)")
    p.add_argument("--replicas", type=int, default=None, required=False,
                   help="The new desired number of replicas. Required.")


def _targets(s: Session, words: list[str], verb: str) -> list[tuple]:
    if not words:
        raise CLIError("required resource not specified")
    if all("/" in w for w in words):
        pairs = [w.split("/", 1) for w in words]
    elif len(words) >= 2 and "/" not in words[0]:
        pairs = [[words[0], n] for n in words[1:]]
    else:
        raise CLIError("resource(s) were provided, but no name was specified")
    out = []
    for kind, name in pairs:
        info = s.lookup(kind)
        if verb == "scale" and info.plural not in SCALABLE:
            raise CLIError(f'cannot scale {info.qualified} "{name}": only deployments, '
                           f'replicasets and statefulsets can be scaled')
        if verb != "scale" and info.plural != "deployments":
            raise CLIError(f"no {verb} for {info.qualified} yet: meshctl rollout supports "
                           f"deployments")
        out.append((info, name))
    return out


def run_scale(args, s: Session) -> int:
    if args.replicas is None:
        raise CLIError("required flag(s) \"replicas\" not set")
    if args.replicas < 0:
        raise CLIError("The --replicas=COUNT flag is required, and COUNT must be greater than "
                       "or equal to 0")
    failed = False
    for info, name in _targets(s, args.args, "scale"):
        try:
            s.client.patch(info, name, {"spec": {"replicas": args.replicas}},
                           s.namespace_of(info), subresource="scale")
        except ApiError as e:
            s.err(api_error_text(e))
            failed = True
            continue
        s.out(f"{kind_ref(info)}/{name} scaled\n")
    if failed:
        raise Reported()
    return 0


# -- rollout -----------------------------------------------------------------------------------


def configure_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="(TYPE NAME | TYPE/NAME)")
    p.add_argument("--timeout", default="0",
                   help="The length of time to wait before ending watch, zero means never. "
                        "Any other values should contain a corresponding time unit (e.g. 1s, "
                        "2m, 3h).")
    p.add_argument("-w", "--watch", default="true", choices=("true", "false"),
                   help="Watch the status of the rollout until it's done.")


def run_status(args, s: Session) -> int:
    [(info, name)] = _targets(s, args.args, "status")[:1]
    timeout = parse_duration(args.timeout, "--timeout")
    deadline = time.monotonic() + timeout if timeout else None
    ns = s.namespace_of(info)
    last = None
    while True:
        deploy = s.get_object(info, name)
        message, done = rollout_status_message(deploy)
        if message != last:
            s.out(message + "\n")
            s.flush()
            last = message
        if done or args.watch == "false":
            return 0
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise CLIError("timed out waiting for the condition")
        # Wait for the next change of this Deployment (or the deadline), then look again.
        rv = deploy["metadata"].get("resourceVersion")
        wait_s = max(1, int(left) + 1) if left is not None else 300
        try:
            stream = s.client.watch(info, ns, resource_version=rv,
                                    field_selector=f"metadata.name={name}",
                                    timeout_seconds=wait_s)
        except ApiError as e:
            if e.code == 410:
                continue  # compacted: read again
            raise
        try:
            for _event in stream:
                break
        finally:
            stream.close()


def configure_undo(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="(TYPE NAME | TYPE/NAME)")
    p.add_argument("--to-revision", type=int, default=0,
                   help="The revision to rollback to. Default to 0 (last revision).")


def run_undo(args, s: Session) -> int:
    for info, name in _targets(s, args.args, "undo"):
        deploy = s.get_object(info, name)
        if (deploy.get("spec") or {}).get("paused"):
            raise CLIError(f'you cannot rollback a paused deployment; resume it first with '
                           f'\'meshctl rollout resume deployment/{name}\' and try again')
        rss = s.client.list_all(lookup("replicasets"), s.namespace_of(info)).get("items") or []
        target = undo_target(deploy, rss, args.to_revision)
        template = template_without_hash(target["spec"]["template"])
        if template == (deploy.get("spec") or {}).get("template"):
            s.out(f"{kind_ref(info)}/{name} skipped rollback (current template already matches "
                  f"revision {revision_of(target)})\n")
            continue
        patch = [{"op": "replace", "path": "/spec/template", "value": template}]
        try:
            s.client.patch(info, name, patch, s.namespace_of(info), patch_type="json")
        except ApiError as e:
            s.err(api_error_text(e))
            raise Reported() from None
        s.out(f"{kind_ref(info)}/{name} rolled back\n")
    return 0


def configure_history(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="(TYPE NAME | TYPE/NAME)")


def run_history(args, s: Session) -> int:
    for info, name in _targets(s, args.args, "history"):
        deploy = s.get_object(info, name)
        rss = s.client.list_all(lookup("replicasets"), s.namespace_of(info)).get("items") or []
        s.out(f"{kind_ref(info)}/{name} \n")
        s.out(format_table(history_rows(deploy, rss)))
        s.out("\n")
    return 0
