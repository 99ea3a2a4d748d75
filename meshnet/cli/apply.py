"""`meshctl apply -f`: create what is missing, patch what changed (client-side apply).

Theory of operation
-------------------
1. Read every manifest (`-f` files, directories, `-R`, `-`), map every kind, resolve every
   namespace. Any problem anywhere -> print all of them, send nothing, exit 1.
2. For each object, in file order: GET it. Absent -> POST it carrying the
   `kubectl.kubernetes.io/last-applied-configuration` annotation -> `created`. Present ->
   three-way merge patch (see `patch.py`) from last-applied / current / file; empty ->
   `unchanged`, else PATCH with `application/merge-patch+json` -> `configured`.
3. A server error on one object is printed with kubectl's context (`error when creating
   "x.yaml": ...`) and the others still go ahead; the exit status is then 1.

kubectl sends strategic merge patches for built-in kinds; we send JSON merge patches, which
replace lists whole. That is correct against meshnet's server and any Kubernetes server, and
the list rule in `patch.py` keeps re-applies from rewriting defaulted lists.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass

from meshnet.api.resources import ResourceInfo, UnknownResource
from meshnet.client.errors import ApiError

from .context import Session
from .errors import CLIError, Reported, api_error_text, error_text
from .flags import add_dry_run, add_filename_flags, add_output_flag
from .manifests import Manifest, ManifestError
from .patch import go_json, original_from, three_way_merge_patch, with_last_applied
from .printers import object_ref, parse_output, render_objects

DESCRIPTION = """Apply a configuration to a resource by file name or stdin. The resource name must
be specified. This resource will be created if it doesn't exist yet. JSON and YAML formats are
accepted.

Changes are computed as a three-way merge of the last applied configuration (kept in the
kubectl.kubernetes.io/last-applied-configuration annotation), the live object and the file,
and sent as a JSON merge patch (application/merge-patch+json): fields removed from the file
since the last apply are removed from the object, and lists are replaced as a whole."""

EXAMPLES = """Examples:
  # Apply the configuration in nginx.yaml
  meshctl apply -f nginx.yaml

  # Apply every manifest in a directory tree
  meshctl apply -R -f manifests/

  # Apply the YAML passed into stdin
  cat nginx.yaml | meshctl apply -f -"""


def configure(p: argparse.ArgumentParser) -> None:
    add_filename_flags(p, "to apply")
    add_dry_run(p)
    add_output_flag(p, "Output format. One of: (json, yaml, name).")
    p.add_argument("-k", "--kustomize", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--prune", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--server-side", action="store_true", help=argparse.SUPPRESS)


@dataclass
class Planned:
    manifest: Manifest
    info: ResourceInfo
    namespace: str | None
    obj: dict

    @property
    def name(self) -> str:
        return self.manifest.name


def gvr_text(info: ResourceInfo) -> str:
    return f"{info.group}/{info.version}, Resource={info.plural}"


def gvk_text(info: ResourceInfo) -> str:
    return f"{info.group}/{info.version}, Kind={info.kind}"


def plan(s: Session, args, verb: str) -> list[Planned]:
    """Read, map and place every manifest; print every problem and raise if there is one."""
    try:
        manifests = s.read_manifests(args)
    except ManifestError as e:  # a path that does not exist
        raise CLIError(e.message) from None
    problems: list[str] = []
    out: list[Planned] = []
    for m in manifests:
        try:
            info = s.mapper.by_kind(m.api_version, m.kind)
        except UnknownResource:
            problems.append(
                f'resource mapping not found for name: "{m.name}" namespace: "{m.namespace}" '
                f'from "{m.source}": no matches for kind "{m.kind}" in version '
                f'"{m.api_version}"\nensure the kind is one the server serves (line {m.line}); '
                f"supported kinds: {', '.join(s.mapper.known_kinds())}")
            continue
        if not m.name:
            problems.append(
                f"error when retrieving current configuration of:\nResource: \"{gvr_text(info)}"
                f"\", GroupVersionKind: \"{gvk_text(info)}\"\nName: \"\", Namespace: "
                f"\"{m.namespace or s.namespace}\"\nfrom server for: \"{m.source}\": resource "
                f"name may not be empty (line {m.line})")
            continue
        obj = copy.deepcopy(m.obj)
        ns = None
        if info.namespaced:
            if m.namespace and s.namespace_explicit and m.namespace != s.namespace:
                problems.append(
                    f'the namespace from the provided object "{m.namespace}" does not match the '
                    f'namespace "{s.namespace}". You must pass \'--namespace={m.namespace}\' to '
                    f"perform this operation.")
                continue
            ns = m.namespace or s.namespace
            obj.setdefault("metadata", {})["namespace"] = ns
        out.append(Planned(m, info, ns, obj))
    if problems:
        for text in problems:
            s.err(f"error: {text}")
        raise Reported()
    return out


def _suffix(dry_run: str) -> str:
    return {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")


def apply_one(s: Session, p: Planned, dry_run: str) -> tuple[str, dict]:
    """Create or patch one object; returns (`created`|`configured`|`unchanged`, object)."""
    client = s.client
    try:
        current = client.get(p.info, p.name, p.namespace)
    except ApiError as e:
        if e.code != 404:
            raise _Contextual(e, (
                f'error when retrieving current configuration of:\nResource: '
                f'"{gvr_text(p.info)}", GroupVersionKind: "{gvk_text(p.info)}"\nName: '
                f'"{p.name}", Namespace: "{p.namespace or ""}"\nfrom server for: '
                f'"{p.manifest.source}": ')) from None
        current = None
    modified = with_last_applied(p.obj)
    if current is None:
        if dry_run == "client":
            return "created", modified
        try:
            return "created", client.create(p.info, modified, p.namespace,
                                            dry_run=dry_run == "server")
        except ApiError as e:
            raise _Contextual(e, f'error when creating "{p.manifest.source}": ') from None
    patch = three_way_merge_patch(original_from(current), modified, current)
    if not patch:
        return "unchanged", current
    if dry_run == "client":
        return "configured", current
    try:
        return "configured", client.patch(p.info, p.name, patch, p.namespace,
                                          dry_run=dry_run == "server")
    except ApiError as e:
        raise _Contextual(e, (
            f"error when applying patch:\n{go_json(patch)}\nto:\nResource: "
            f'"{gvr_text(p.info)}", GroupVersionKind: "{gvk_text(p.info)}"\nName: "{p.name}", '
            f'Namespace: "{p.namespace or ""}"\nfor: "{p.manifest.source}": error when patching '
            f'"{p.manifest.source}": ')) from None


class _Contextual(Exception):
    def __init__(self, err: ApiError, context: str):
        super().__init__(err.message)
        self.err = err
        self.context = context

    def text(self) -> str:
        return api_error_text(self.err, self.context)


def run(args, s: Session) -> int:
    if args.kustomize:
        raise CLIError("kustomize directories (-k) are not supported by meshctl; render them "
                       "with 'kustomize build DIR | meshctl apply -f -'")
    if args.server_side:
        raise CLIError("server-side apply is not supported by meshctl yet; drop --server-side "
                       "(client-side apply sends a merge patch)")
    if args.prune:
        raise CLIError("--prune is not supported by meshctl; delete removed objects with "
                       "'meshctl delete'")
    if not args.filename:
        raise CLIError("must specify one of -f and -k")
    spec = parse_output(args.output, ("json", "yaml", "name")) if args.output else None
    planned = plan(s, args, "apply")
    failed = False
    results: list[tuple[dict, ResourceInfo]] = []
    for p in planned:
        try:
            verb, obj = apply_one(s, p, args.dry_run)
        except _Contextual as e:
            s.err(e.text())
            failed = True
            continue
        except ApiError as e:
            s.err(error_text(e))
            failed = True
            continue
        if spec is None:
            s.out(f"{object_ref(p.info, p.name)} {verb}{_suffix(args.dry_run)}\n")
        else:
            results.append((obj, p.info))
    if spec is not None and results:
        s.out(render_objects([o for o, _ in results], [i for _, i in results], spec,
                             single=len(results) == 1))
    if failed:
        raise Reported()
    return 0

