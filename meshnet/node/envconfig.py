"""A container's environment from its spec: `envFrom`, `env[].value`, `env[].valueFrom`.

Pure: ConfigMaps and Secrets are passed in as `{name: data}` dicts (Secret data still base64,
as on the wire); a missing object or key that is not `optional` raises `ConfigError` with
kubelet's wording, which the pod worker shows as CreateContainerConfigError. Order follows
kubelet: `envFrom` sources first, then `env` entries (which win), with `$(VAR)` references in
`value` expanded against what came before (`$$` escapes a dollar).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from meshnet.node.errors import ConfigError

_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


@dataclass(frozen=True)
class PodFacts:
    """What the downward API can expose about the pod."""
    name: str
    namespace: str
    uid: str = ""
    node_name: str = ""
    pod_ip: str = ""
    host_ip: str = ""
    service_account: str = "default"
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)


def field_ref(path: str, pod: PodFacts) -> str:
    simple = {"metadata.name": pod.name, "metadata.namespace": pod.namespace,
              "metadata.uid": pod.uid, "spec.nodeName": pod.node_name,
              "spec.serviceAccountName": pod.service_account, "status.podIP": pod.pod_ip,
              "status.podIPs": pod.pod_ip, "status.hostIP": pod.host_ip,
              "status.hostIPs": pod.host_ip}
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        source = pod.labels if m.group(1) == "labels" else pod.annotations
        return source.get(m.group(2), "")
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}: use metadata.name, "
                      f"metadata.namespace, metadata.uid, metadata.labels['k'], spec.nodeName, "
                      f"status.podIP or status.hostIP")


def _decode(value: str) -> str:
    return base64.b64decode(value).decode("utf-8", "replace")


def _source(kind: str, name: str, objects: dict[str, dict], optional: bool
            ) -> dict[str, str] | None:
    data = objects.get(name)
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    return data


def _key_ref(kind: str, ref: dict, objects: dict, decode: bool) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    data = _source(kind, name, objects, optional)
    if data is None:
        return None
    if key not in data:
        if optional:
            return None
        raise ConfigError(f'couldn\'t find key {key} in {kind} {name}')
    return _decode(data[key]) if decode else data[key]


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, unknown ones kept verbatim."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR_REF.sub(sub, value)


def resolve_env(container: dict, pod: PodFacts, configmaps: dict[str, dict],
                secrets: dict[str, dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            ref, kind, objects, decode = src["configMapRef"], "ConfigMap", configmaps, False
        elif "secretRef" in src:
            ref, kind, objects, decode = src["secretRef"], "Secret", secrets, True
        else:
            continue
        data = _source(kind, ref.get("name", ""), objects, bool(ref.get("optional")))
        for key, value in sorted((data or {}).items()):
            if _C_IDENTIFIER.match(prefix + key):  # kubelet skips invalid names (with an Event)
                env[prefix + key] = _decode(value) if decode else value
    for var in container.get("env") or []:
        name = var.get("name", "")
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        vf = var["valueFrom"] or {}
        if "fieldRef" in vf:
            value = field_ref((vf["fieldRef"] or {}).get("fieldPath", ""), pod)
        elif "configMapKeyRef" in vf:
            value = _key_ref("ConfigMap", vf["configMapKeyRef"], configmaps, False)
        elif "secretKeyRef" in vf:
            value = _key_ref("Secret", vf["secretKeyRef"], secrets, True)
        elif "resourceFieldRef" in vf:
            value = "0"  # no resource accounting yet; TODO with the scheduler's requests
        else:
            raise ConfigError(f"env {name}: valueFrom needs fieldRef, configMapKeyRef or "
                              f"secretKeyRef")
        if value is not None:
            env[name] = value
    return env


def referenced(pod_spec: dict) -> tuple[frozenset[str], frozenset[str]]:
    """(ConfigMap names, Secret names) the pod uses, in env or volumes: what to watch."""
    cms, secrets = set(), set()
    for c in pod_spec.get("containers") or []:
        for src in c.get("envFrom") or []:
            if "configMapRef" in src:
                cms.add(src["configMapRef"].get("name", ""))
            if "secretRef" in src:
                secrets.add(src["secretRef"].get("name", ""))
        for var in c.get("env") or []:
            vf = var.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                cms.add(vf["configMapKeyRef"].get("name", ""))
            if "secretKeyRef" in vf:
                secrets.add(vf["secretKeyRef"].get("name", ""))
    for vol in pod_spec.get("volumes") or []:
        if "configMap" in vol:
            cms.add(vol["configMap"].get("name", ""))
        if "secret" in vol:
            secrets.add(vol["secret"].get("secretName", ""))
    return frozenset(cms), frozenset(secrets)
