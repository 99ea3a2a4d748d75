"""Pod volumes on the netns runtime: per-pod directories bind-mounted at `mountPath`.

Theory of operation
-------------------
Every volume is a directory under `<state-dir>/pods/<uid>/volumes/<name>` (hostPath: the host
path itself). `compile_files()` is pure: a configMap or secret volume becomes `{path: bytes}`.
`write_atomic()` publishes those files the way kubelet's AtomicWriter does: the payload goes to
a fresh hidden `..<stamp>` directory, the `..data` symlink is swapped to it with one rename,
and each visible name is a symlink through `..data` — so a container reading a mounted
ConfigMap sees either the old or the new set of files, never a mix, and updates appear inside
the container's bind mount without remounting.

`container_mounts()` turns `volumeMounts` into (source, target, read_only) triples for
`launch.py`, which bind-mounts them inside the container's private mount namespace only.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as _secrets
import shutil
from pathlib import Path

from meshnet.node.errors import ConfigError

DATA_LINK = "..data"


def compile_files(volume: dict, configmaps: dict[str, dict], secrets: dict[str, dict],
                  binary_configmaps: dict[str, dict] | None = None) -> dict[str, bytes] | None:
    """The files of a configMap/secret volume, or None for kinds that hold no payload."""
    if "configMap" in volume:
        src = volume["configMap"] or {}
        name = src.get("name", "")
        if name not in configmaps:
            if src.get("optional"):
                return {}
            raise ConfigError(f'configmap "{name}" not found (volume "{volume.get("name")}")')
        payload = {k: v.encode() for k, v in configmaps[name].items()}
        for k, v in ((binary_configmaps or {}).get(name) or {}).items():
            payload[k] = base64.b64decode(v)
        return _select(payload, src.get("items"), "ConfigMap", name)
    if "secret" in volume:
        src = volume["secret"] or {}
        name = src.get("secretName", "")
        if name not in secrets:
            if src.get("optional"):
                return {}
            raise ConfigError(f'secret "{name}" not found (volume "{volume.get("name")}")')
        payload = {k: base64.b64decode(v) for k, v in secrets[name].items()}
        return _select(payload, src.get("items"), "Secret", name)
    return None


def _select(payload: dict[str, bytes], items: list | None, kind: str, name: str
            ) -> dict[str, bytes]:
    if not items:
        return payload
    out = {}
    for item in items:
        key = item.get("key", "")
        if key not in payload:
            raise ConfigError(f"configmap references non-existent config key: {key}"
                              if kind == "ConfigMap" else
                              f'couldn\'t find key {key} in Secret {name}')
        out[item.get("path") or key] = payload[key]
    return out


def write_atomic(target: Path, files: dict[str, bytes], mode: int = 0o644) -> bool:
    """Publish `files` under `target`; False when nothing changed."""
    target.mkdir(parents=True, exist_ok=True)
    data = target / DATA_LINK
    if data.exists() and _read_tree(data) == files:
        return False
    stamp = target / f"..{_secrets.token_hex(6)}"
    stamp.mkdir()
    for rel, content in files.items():
        path = stamp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    old = os.readlink(data) if data.is_symlink() else None
    tmp_link = target / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    tmp_link.symlink_to(stamp.name)
    os.replace(tmp_link, data)  # the one atomic step
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"{DATA_LINK}/{top}")
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.is_symlink() and entry.name not in tops:
            entry.unlink()
    if old and old != stamp.name:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


def _read_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, names in os.walk(root, followlinks=True):
        for name in names:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def volume_source(pod_dir: Path, volume: dict) -> Path:
    if "hostPath" in volume:
        return Path((volume["hostPath"] or {}).get("path", "/nonexistent"))
    return pod_dir / "volumes" / volume.get("name", "")


def prepare_volumes(pod_dir: Path, spec: dict, configmaps: dict, secrets: dict,
                    binary_configmaps: dict | None = None) -> bool:
    """Create or refresh every volume of the pod; True when a file payload changed."""
    changed = False
    for volume in spec.get("volumes") or []:
        source = volume_source(pod_dir, volume)
        files = compile_files(volume, configmaps, secrets, binary_configmaps)
        if files is not None:
            changed |= write_atomic(source, files)
        elif "hostPath" in volume:
            kind = (volume["hostPath"] or {}).get("type", "")
            if kind == "DirectoryOrCreate":
                source.mkdir(parents=True, exist_ok=True)
            elif not source.exists():
                raise ConfigError(f'hostPath volume "{volume.get("name")}": {source} does not '
                                  f'exist (use type DirectoryOrCreate to create it)')
        else:  # emptyDir and anything else that starts empty
            source.mkdir(parents=True, exist_ok=True)
    return changed


def container_mounts(pod_dir: Path, spec: dict, container: dict) -> list[tuple[str, str, bool]]:
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    mounts = []
    for vm in container.get("volumeMounts") or []:
        volume = volumes.get(vm.get("name"))
        if volume is None:
            raise ConfigError(f'volumeMount "{vm.get("name")}" names no volume of the pod')
        source = volume_source(pod_dir, volume)
        if vm.get("subPath"):
            source = source / vm["subPath"]
        read_only = bool(vm.get("readOnly")) or "configMap" in volume or "secret" in volume
        mounts.append((str(source), vm.get("mountPath", ""), read_only))
    return mounts


class MountTargets:
    """Mount points the agent had to create (the netns runtime has no container root
    filesystem, so `/etc/config` must exist on the host to bind over it). Counted per user, and
    removed — only if still empty — when the last pod using one goes: removing a directory that
    is a mount point in another pod's namespace would detach that pod's volume."""

    def __init__(self, path: Path | None = None):
        self.users: dict[str, int] = {}
        self.path = path  # the created set survives an agent crash, so nothing is left behind
        self.created: set[str] = set()
        if path is not None and path.exists():
            self.created = set(json.loads(path.read_text()))

    def _save(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(sorted(self.created)))
            os.replace(tmp, self.path)

    def release_unused(self) -> None:
        """After start-up (every live pod re-acquired its targets): remove created directories
        no pod uses any more."""
        for path in sorted(self.created, key=len, reverse=True):
            if not any(u == path or u.startswith(path + "/") for u in self.users):
                self.users[path] = 1
                self.release([path])

    def __repr__(self) -> str:
        return f"<MountTargets created={len(self.created)}>"

    def acquire(self, paths: list[str]) -> None:
        for path in paths:
            p = Path(path)
            if not p.exists():
                missing = [q for q in [p, *p.parents] if not q.exists()]
                p.mkdir(parents=True, exist_ok=True)
                self.created.update(str(q) for q in missing)
                self._save()
            self.users[path] = self.users.get(path, 0) + 1

    def release(self, paths: list[str]) -> None:
        for path in paths:
            left = self.users.get(path, 0) - 1
            if left > 0:
                self.users[path] = left
                continue
            self.users.pop(path, None)
            p = Path(path)
            while str(p) in self.created and not any(u == str(p) or u.startswith(str(p) + "/")
                                                     for u in self.users):
                try:
                    p.rmdir()
                except OSError:
                    break
                self.created.discard(str(p))
                p = p.parent
            self._save()
