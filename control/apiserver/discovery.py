"""Discovery documents: `/version`, `/api`, `/apis`, `/apis/<group>` and the resource lists.

Theory of operation
-------------------
Everything here is derived from the kinds table (`meshnet.api.resources.RESOURCES`); adding a
row there is all it takes to appear in discovery. The shapes are kube-apiserver's *legacy*
discovery (metav1 APIVersions / APIGroupList / APIGroup / APIResourceList). client-go asks
for the aggregated format first (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;
as=APIGroupDiscoveryList, ...;q=0.9`) and decides by the response's Content-Type: a plain
`application/json` answer is parsed as the legacy documents built here, after which it fetches
one resource list per group-version. So the server must answer these paths with exactly
`Content-Type: application/json` (no `g=`/`as=` parameters), whatever the Accept header says.

Subresources are listed as `<plural>/<sub>` entries after their parent, with the verbs and
kind kube-apiserver reports. `deployments/scale` names group `autoscaling`, version `v1`,
kind `Scale`: kubectl's scale client reads that entry to know how to decode the subresource,
so the server must serve and accept `autoscaling/v1` Scale objects there.

Pure functions returning fresh dicts (callers may mutate them); no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import platform
import sys

from meshnet.api.resources import GROUPS, RESOURCES, ResourceInfo, in_group_version

# The Kubernetes release whose API this server speaks. kubectl warns when its own minor
# version is more than one away from the server's (`kubectl version`); clients that compare
# versions parse gitVersion as semver, where a `-suffix` is a pre-release.
KUBE_MAJOR = "1"
KUBE_MINOR = "30"
GIT_VERSION = f"v{KUBE_MAJOR}.{KUBE_MINOR}.0+meshnet"
GIT_COMMIT = "0000000000000000000000000000000000000000"
BUILD_DATE = "2024-04-17T00:00:00Z"  # v1.30.0's release date: the API level we implement

# Go's GOARCH names for what Python's platform.machine() reports.
_GOARCH = {
    "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
    "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386",
    "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
}

# Verbs and kind of each subresource, as kube-apiserver's discovery reports them.
# (group, version, kind) of None means "the parent's".
_SUBRESOURCES: dict[str, tuple[tuple[str, ...], tuple[str, str, str] | None]] = {
    "status": (("get", "patch", "update"), None),
    "scale": (("get", "patch", "update"), ("autoscaling", "v1", "Scale")),
    "log": (("get",), None),
    "exec": (("create", "get"), ("", "", "PodExecOptions")),
    "finalize": (("update",), None),
}

SERVER_CIDR_ALL = "0.0.0.0/0"


def version_info() -> dict:
    """`/version` (apimachinery version.Info). kubectl prints gitVersion as the server version."""
    machine = platform.machine().lower()
    return {
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": GIT_COMMIT,
        "gitTreeState": "clean",
        "buildDate": BUILD_DATE,
        # There is no Go toolchain here; these say honestly what runs the server.
        "goVersion": f"{platform.python_implementation().lower()}{platform.python_version()}",
        "compiler": platform.python_implementation().lower(),
        "platform": f"{sys.platform}/{_GOARCH.get(machine, machine)}",
    }


def api_versions(server_address: str) -> dict:
    """`/api`: the legacy core group's versions and the address clients should use."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": SERVER_CIDR_ALL, "serverAddress": server_address},
        ],
    }


def _versions(group: str) -> list[str]:
    return list(dict.fromkeys(r.version for r in RESOURCES if r.group == group))


def _group_entry(group: str) -> dict:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in _versions(group)]
    return {"name": group, "versions": versions, "preferredVersion": dict(versions[0])}


def api_group_list() -> dict:
    """`/apis`: every named group with its versions, preferred version first."""
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(g) for g in GROUPS]}


def api_group(group: str) -> dict | None:
    """`/apis/<group>`; None when the group is not served (the caller answers 404)."""
    if group not in GROUPS:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group)}


def storage_version_hash(info: ResourceInfo) -> str:
    """kube-apiserver's discovery hash of the storage group/version/kind.

    base64 of the first 8 bytes of sha256("group/version/kind") — the same value a real
    cluster shows (`xPOwRZ+Yhw8=` for pods), so tools that compare it across servers agree.
    """
    digest = hashlib.sha256(f"{info.group}/{info.version}/{info.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def subresource_entry(info: ResourceInfo, sub: str) -> dict:
    """The APIResource entry of `<plural>/<sub>`; KeyError names an unknown subresource."""
    try:
        verbs, gvk = _SUBRESOURCES[sub]
    except KeyError:
        raise KeyError(f"subresource {info.plural}/{sub} has no discovery entry; add it to "
                       f"_SUBRESOURCES in {__name__} (known: {', '.join(_SUBRESOURCES)})"
                       ) from None
    entry = {"name": f"{info.plural}/{sub}", "singularName": "", "namespaced": info.namespaced}
    if gvk is not None:
        group, version, kind = gvk
        if version:
            entry["group"], entry["version"] = group, version
        entry["kind"] = kind
    else:
        entry["kind"] = info.kind
    entry["verbs"] = list(verbs)
    return entry


def resource_entry(info: ResourceInfo) -> dict:
    entry = {
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": list(info.verbs),
    }
    if info.short_names:
        entry["shortNames"] = list(info.short_names)
    if info.categories:
        entry["categories"] = list(info.categories)
    entry["storageVersionHash"] = storage_version_hash(info)
    return entry


def api_resource_list(group: str, version: str) -> dict | None:
    """`/api/v1` or `/apis/<group>/<version>`; None when that group-version is not served."""
    infos = in_group_version(group, version)
    if not infos:
        return None
    resources: list[dict] = []
    for info in sorted(infos, key=lambda r: r.plural):
        resources.append(resource_entry(info))
        resources.extend(subresource_entry(info, sub) for sub in sorted(info.subresources))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def group_versions() -> list[tuple[str, str]]:
    """Every (group, version) served, core first; openapi.py builds one document per entry."""
    return list(dict.fromkeys((r.group, r.version) for r in RESOURCES))
