"""`meshctl delete`: by file, by type and name, by selector, or all of a type.

Deletes go out one object at a time (as kubectl does, so each gets its own line and its own
error), with `propagationPolicy` from `--cascade` (background by default). With `--wait`
(the default) the command then waits until every deleted object is really gone, so that a
namespace or an object with finalizers is not reported deleted while it still exists.
"""

from __future__ import annotations

import argparse
import time

from meshnet.api.resources import ResourceInfo
from meshnet.client.errors import ApiError

from .apply import plan
from .context import Session, named_objects, parse_duration, parse_resource_args
from .errors import CLIError, Reported, api_error_text, error_text
from .flags import add_all_namespaces, add_bool, add_dry_run, add_filename_flags, add_output_flag
from .printers import kind_ref, parse_output

DESCRIPTION = """Delete resources by file names, stdin, resources and names, or by resources and
label selector.

JSON and YAML formats are accepted. Only one type of argument may be specified: file names,
resources and names, or resources and label selector."""

EXAMPLES = """Examples:
  # Delete the objects in nginx.yaml
  meshctl delete -f nginx.yaml

  # Delete a service and a deployment by name
  meshctl delete svc/nginx-service deploy/nginx-deployment

  # Delete all services with label app=nginx
  meshctl delete svc -l app=nginx

  # Delete every ingress in the current namespace, ignoring a missing one
  meshctl delete ingress --all --ignore-not-found"""

_CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan",
            "true": "Background", "false": "Orphan"}
WEEK_S = 7 * 24 * 3600.0  # kubectl's "--timeout=0s": wait a week


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="(TYPE [NAME ...] | TYPE/NAME ...)")
    add_filename_flags(p, "containing the resources to delete")
    p.add_argument("-l", "--selector", default="", metavar="SELECTOR",
                   help="Selector (label query) to filter on.")
    p.add_argument("--field-selector", default="", metavar="SELECTOR",
                   help="Selector (field query) to filter on.")
    add_bool(p, "--all", help="Delete all resources, in the namespace of the specified "
                              "resource types.")
    add_all_namespaces(p, "If present, list the requested object(s) across all namespaces.")
    add_bool(p, "--ignore-not-found", help="Treat \"resource not found\" as a successful delete.")
    add_bool(p, "--wait", default=True, help="If true, wait for resources to be gone before "
                                             "returning. This waits for finalizers.")
    p.add_argument("--timeout", default="0s", metavar="DURATION",
                   help="The length of time to wait before giving up on a delete, zero means "
                        "determine a timeout from the size of the object")
    p.add_argument("--cascade", default="background", metavar="background|orphan|foreground",
                   help='Must be "background", "orphan", or "foreground". Defaults to '
                        "background.")
    p.add_argument("--grace-period", type=int, default=-1, metavar="SECONDS",
                   help="Period of time in seconds given to the resource to terminate "
                        "gracefully. Ignored if negative.")
    add_bool(p, "--now", help="If true, resources are signaled for immediate shutdown (same as "
                              "--grace-period=1).")
    add_bool(p, "--force", help="If true, immediately remove resources from API and bypass "
                                "graceful deletion.")
    add_dry_run(p)
    add_output_flag(p, "Output mode. Use \"-o name\" for shorter output (resource/name).")


def run(args, s: Session) -> int:
    cascade = _CASCADE.get(str(args.cascade).lower())
    if cascade is None:
        raise CLIError(f'invalid cascade value ({args.cascade}). Must be "background", '
                       f'"foreground", or "orphan".')
    grace = None
    if args.force:
        grace = 0
    elif args.now:
        grace = 1
    elif args.grace_period >= 0:
        grace = args.grace_period
    spec = parse_output(args.output, ("name",)) if args.output else None
    items: list[tuple[ResourceInfo, str | None, str, str]] = []  # info, ns, name, source
    if args.filename:
        if args.resources:
            raise CLIError("resource(s) cannot be specified together with -f")
        for p in plan(s, args, "delete"):
            items.append((p.info, p.namespace, p.name, p.manifest.source))
    else:
        if not args.resources:
            raise CLIError("You must provide one or more resources by argument or filename.\n"
                           "Example resource specifications include:\n"
                           "   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n"
                           "   '<resource> <name>'\n   '<resource>'")
        targets, _ = parse_resource_args(s, args.resources, "delete")
        for target in targets:
            info = target.info
            if target.names:
                named = named_objects(s, target, bool(args.all or args.selector))
                items.extend((*obj, "") for obj in named)
                continue
            if not (args.all or args.selector or args.field_selector):
                raise CLIError("resource(s) were provided, but no name was specified")
            listed = s.client.list_all(info, s.namespace_for(info),
                                       label_selector=args.selector or None,
                                       field_selector=args.field_selector or None)
            for obj in listed.get("items") or []:
                meta = obj.get("metadata") or {}
                items.append((info, meta.get("namespace") or None if info.namespaced else None,
                              meta.get("name", ""), ""))
        if not items:
            s.err("No resources found")
            return 0
    failed = False
    deleted: list[tuple[ResourceInfo, str | None, str, str]] = []
    suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(args.dry_run, "")
    for info, ns, name, source in items:
        uid = ""
        if args.dry_run != "client":
            try:
                result = s.client.delete(info, name, ns, propagation_policy=cascade,
                                         grace_period=grace, dry_run=args.dry_run == "server")
                uid = ((result.get("metadata") or {}).get("uid")
                       if result.get("kind") != "Status" else "") or ""
            except ApiError as e:
                if e.code == 404 and args.ignore_not_found:
                    continue
                context = f'error when deleting "{source}": ' if source else ""
                s.err(api_error_text(e, context))
                failed = True
                continue
        if spec is not None:
            s.out(f"{kind_ref(info)}/{name}\n")
        else:
            s.out(f'{kind_ref(info)} "{name}" deleted{suffix}\n')
        s.flush()
        deleted.append((info, ns, name, uid))
    if args.wait and args.dry_run == "none" and deleted:
        timeout = parse_duration(args.timeout, "--timeout") or WEEK_S
        try:
            _wait_gone(s, deleted, timeout)
        except ApiError as e:
            s.err(error_text(e))
            failed = True
    if failed:
        raise Reported()
    return 0


def _wait_gone(s: Session, deleted: list, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(deleted)
    delay = 0.05
    while pending:
        still = []
        for info, ns, name, uid in pending:
            try:
                obj = s.client.get(info, name, ns)
            except ApiError as e:
                if e.code == 404:
                    continue
                raise
            if uid and (obj.get("metadata") or {}).get("uid") != uid:
                continue  # a new object with the same name: ours is gone
            still.append((info, ns, name, uid))
        pending = still
        if not pending:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(f'{kind_ref(i)}/{n}' for i, _, n, _ in pending)
            raise CLIError(f"timed out waiting for the condition on {names}")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
