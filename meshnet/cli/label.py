"""`meshctl label` and `meshctl annotate`: KEY=VAL to set, KEY- to remove, --overwrite.

Arguments are split as kubectl splits them: anything containing `=` or ending in `-` is an
update, the rest names resources. Changes go out as a JSON merge patch of
`metadata.labels` / `metadata.annotations` only, so nothing else on the object is touched and
no resourceVersion is needed. Messages match kubectl: `service/web labeled`, `unlabeled`,
`not labeled`, `annotated`.
"""

from __future__ import annotations

import argparse

from meshnet.api.names import is_qualified_name, is_valid_label_value
from meshnet.client.errors import ApiError

from .context import Session, named_objects, parse_resource_args
from .errors import CLIError, Reported, api_error_text
from .flags import add_all_namespaces, add_bool, add_dry_run, add_output_flag
from .patch import UpdateError, metadata_map_patch
from .printers import object_ref

def key_problem(key: str) -> str | None:
    """Why `key` is not a valid qualified name (label or annotation key), or None."""
    errors = is_qualified_name(key)
    return "; ".join(errors) if errors else None


def is_update(arg: str) -> bool:
    return "=" in arg or arg.endswith("-")


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """kubectl's getResourcesAndLabels: (resource args, update args)."""
    resources, updates = [], []
    for a in args:
        (updates if is_update(a) else resources).append(a)
    return resources, updates


def parse_updates(specs: list[str], noun: str) -> tuple[dict[str, str], list[str]]:
    """KEY=VAL / KEY- -> (set, remove); kubectl's validation and wording."""
    sets: dict[str, str] = {}
    removes: list[str] = []
    for spec in specs:
        if "=" in spec:
            if noun == "label":
                parts = spec.split("=")
                if len(parts) != 2:
                    raise CLIError(f"invalid label spec: {spec}")
                key, value = parts
            else:
                key, _, value = spec.partition("=")
            problem = key_problem(key)
            if problem:
                raise CLIError(f'invalid {noun} spec: {spec}: invalid key "{key}": {problem}')
            value_errors = is_valid_label_value(value) if noun == "label" else []
            if value_errors:
                raise CLIError(f'invalid label value: "{spec}": {"; ".join(value_errors)}')
            sets[key] = value
        elif spec.endswith("-"):
            key = spec[:-1]
            problem = key_problem(key)
            if problem:
                raise CLIError(f'invalid {noun} spec: {spec}: invalid key "{key}": {problem}')
            removes.append(key)
        else:
            raise CLIError(f"unknown {noun} spec: {spec}")
    for key in removes:
        if key in sets:
            raise CLIError(f"can not both modify and remove {noun}s in the same command")
    return sets, removes


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="(TYPE NAME | TYPE/NAME) KEY_1=VAL_1 ... KEY_N-")
    add_bool(p, "--overwrite", help="If true, allow labels/annotations to be overwritten, "
                                    "otherwise reject updates that overwrite existing ones.")
    add_bool(p, "--all", help="Select all resources, in the namespace of the specified "
                              "resource types")
    add_all_namespaces(p, "If true, check the specified action in all namespaces.")
    p.add_argument("-l", "--selector", default="", metavar="SELECTOR",
                   help="Selector (label query) to filter on.")
    add_dry_run(p)
    add_output_flag(p, "Output format. One of: (json, yaml, name).")


def run_for(verb: str):
    noun = "label" if verb == "label" else "annotation"
    field = "labels" if verb == "label" else "annotations"
    done = "labeled" if verb == "label" else "annotated"

    def run(args, s: Session) -> int:
        resource_args, update_args = split_args(args.args)
        if not update_args:
            raise CLIError(f"at least one {noun} update is required")
        sets, removes = parse_updates(update_args, noun)
        targets, _ = parse_resource_args(s, resource_args, verb)
        objects = []
        for target in targets:
            info = target.info
            if target.names:
                objects.extend(named_objects(s, target, bool(args.all or args.selector)))
            elif args.all or args.selector:
                listed = s.client.list_all(info, s.namespace_for(info),
                                           label_selector=args.selector or None)
                for obj in listed.get("items") or []:
                    meta = obj.get("metadata") or {}
                    objects.append((info, meta.get("namespace") if info.namespaced else None,
                                    meta.get("name", "")))
            else:
                raise CLIError("resource(s) were provided, but no name was specified")
        failed = False
        for info, ns, name in objects:
            try:
                current = s.client.get(info, name, ns)
                existing = (current.get("metadata") or {}).get(field) or {}
                patch, changed = metadata_map_patch(field, existing, sets, removes,
                                                    overwrite=args.overwrite, noun=noun)
                for key in removes:
                    if key not in existing:
                        s.err(f'{noun} "{key}" not found.')
                if changed and args.dry_run != "client":
                    s.client.patch(info, name, patch, ns, dry_run=args.dry_run == "server")
            except UpdateError as e:
                s.err(f"error: {e}")
                failed = True
                continue
            except ApiError as e:
                s.err(api_error_text(e))
                failed = True
                continue
            if noun == "label":
                after = dict(existing)
                after.update(sets)
                for key in removes:
                    after.pop(key, None)
                if not changed:
                    message = "not labeled"
                elif not args.overwrite and len(after) < len(existing):
                    message = "unlabeled"
                else:
                    message = done
            else:
                message = done
            suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(args.dry_run,
                                                                                 "")
            if args.output == "name":
                s.out(f"{object_ref(info, name)}\n")
            else:
                s.out(f"{object_ref(info, name)} {message}{suffix}\n")
        if failed:
            raise Reported()
        return 0
    return run


LABEL_DESCRIPTION = """Update the labels on a resource.

  *  A label key and value must begin with a letter or number, and may contain letters, numbers,
     hyphens, dots, and underscores, up to 63 characters each.
  *  Optionally, the key can begin with a DNS subdomain prefix and a single '/', like
     example.com/my-app.
  *  If --overwrite is true, then existing labels can be overwritten, otherwise attempting to
     overwrite a label will result in an error."""

LABEL_EXAMPLES = """Examples:
  # Update service 'web' with the label 'tier' and the value 'frontend'
  meshctl label svc web tier=frontend

  # Overwrite an existing value
  meshctl label --overwrite svc web tier=backend

  # Remove the label named 'tier'
  meshctl label svc web tier-"""

ANNOTATE_DESCRIPTION = """Update the annotations on one or more resources.

All Kubernetes objects support the ability to store additional data with the object as
annotations. Annotations are key/value pairs that can be larger than labels and include
arbitrary string values such as structured JSON."""

ANNOTATE_EXAMPLES = """Examples:
  # Update service 'web' with the annotation 'description' and the value 'my frontend'
  meshctl annotate svc web description='my frontend'

  # Remove it again
  meshctl annotate svc web description-"""
