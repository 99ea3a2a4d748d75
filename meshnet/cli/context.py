"""The session one meshctl invocation runs in: streams, kubeconfig, client, namespace, mapper.

Everything is resolved lazily, so `meshctl create deployment x --image=y --dry-run=client`
works with no kubeconfig at all and `meshctl config view` never dials the server.
The resolution order is kubectl's: `-n` beats the context's namespace, which beats
`default`; `--context`, `--cluster`, `--user`, `--server`, `--token` override the kubeconfig.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property

from meshnet.api.resources import ResourceInfo, UnknownResource
from meshnet.client.discovery import Discovery, RestMapper
from meshnet.client.errors import ApiError
from meshnet.client.kubeconfig import ClusterConnection, Kubeconfig
from meshnet.client.rest import RestClient

from .errors import CLIError, Reported, api_error_text
from .manifests import Manifest, ManifestErrors, read_manifests


@dataclass
class IO:
    stdout: object = None
    stderr: object = None
    stdin: object = None
    env: dict = field(default_factory=dict)

    def __post_init__(self):
        self.stdout = self.stdout or sys.stdout
        self.stderr = self.stderr or sys.stderr
        self.stdin = self.stdin or sys.stdin
        if not self.env:
            self.env = dict(os.environ)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None, flag: str = "--request-timeout") -> float | None:
    """Go durations (`30s`, `1m30s`, `500ms`) or bare seconds; 0 means no limit."""
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        pos = 0
        seconds = 0.0
        for m in _DURATION.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT_S[m.group(2)]
            pos = m.end()
        if pos != len(text) or pos == 0:
            raise CLIError(f'invalid duration for {flag}: "{text}" (use e.g. 30s, 1m, 500ms; '
                           f"0 means no limit)")
    return seconds or None


class _LazyDiscovery:
    def __init__(self, session: "Session"):
        self._session = session
        self._discovery: Discovery | None = None

    def resources(self) -> list[ResourceInfo]:
        if self._discovery is None:
            self._discovery = Discovery(self._session.client)
        return self._discovery.resources()


class Session:
    def __init__(self, args, io: IO):
        self.args = args
        self.io = io

    # -------------------------------------------------------------- output

    def out(self, text: str) -> None:
        self.io.stdout.write(text)

    def err(self, text: str) -> None:
        self.io.stderr.write(text if text.endswith("\n") else text + "\n")

    def flush(self) -> None:
        for stream in (self.io.stdout, self.io.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass

    # ------------------------------------------------------------ config

    def _arg(self, name: str, default=None):
        value = getattr(self.args, name, None)
        return default if value is None else value

    @cached_property
    def kubeconfig(self) -> Kubeconfig:
        return Kubeconfig.load(self._arg("kubeconfig"), self.io.env)

    @cached_property
    def connection(self) -> ClusterConnection:
        insecure = self._arg("insecure_skip_tls_verify")
        return self.kubeconfig.connection(
            self._arg("context"),
            cluster=self._arg("cluster"),
            user=self._arg("user"),
            server=self._arg("server"),
            token=self._arg("token"),
            insecure=True if insecure else None,
            ca_file=self._arg("certificate_authority"),
            tls_server_name=self._arg("tls_server_name"),
        )

    @cached_property
    def client(self) -> RestClient:
        timeout = parse_duration(self._arg("request_timeout"))
        return RestClient(self.connection, timeout=timeout)

    @cached_property
    def mapper(self) -> RestMapper:
        return RestMapper(_LazyDiscovery(self))  # type: ignore[arg-type]

    @property
    def namespace_explicit(self) -> bool:
        return bool(self._arg("namespace"))

    @cached_property
    def namespace(self) -> str:
        if self._arg("namespace"):
            return self._arg("namespace")
        try:
            return self.connection.namespace or "default"
        except Exception:  # noqa: BLE001 - no kubeconfig: the namespace is still "default"
            return "default"

    @property
    def all_namespaces(self) -> bool:
        return bool(self._arg("all_namespaces", False))

    def namespace_for(self, info: ResourceInfo) -> str | None:
        """The namespace a request for `info` goes to (None: cluster-scoped or -A)."""
        if not info.namespaced:
            return None
        if self.all_namespaces:
            return None
        return self.namespace

    def namespace_of(self, info: ResourceInfo) -> str | None:
        """The namespace of an object named on the command line (-A does not apply to names)."""
        return self.namespace if info.namespaced else None

    def get_object(self, info: ResourceInfo, name: str) -> dict:
        """GET one named object, apiVersion and kind filled in; an API error is printed the
        kubectl way and raised as Reported."""
        try:
            obj = self.client.get(info, name, self.namespace_of(info))
        except ApiError as e:
            self.err(api_error_text(e))
            raise Reported() from None
        obj.setdefault("apiVersion", info.api_version)
        obj.setdefault("kind", info.kind)
        return obj

    def read_manifests(self, args) -> list[Manifest]:
        """The manifests of -f/-R (stdin for `-f -`); every error in them is printed and
        Reported raised, so nothing is sent when one document is wrong."""
        try:
            return read_manifests(args.filename, args.recursive, self.io.stdin)
        except ManifestErrors as e:
            for err in e.errors:
                self.err(f"error: {err.message}")
            raise Reported() from None

    def lookup(self, name: str) -> ResourceInfo:
        try:
            return self.mapper.lookup(name)
        except UnknownResource as e:
            raise CLIError(str(e)) from None

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()


@dataclass
class Target:
    """One requested resource type and the names asked for (none: all of them)."""

    info: ResourceInfo
    names: list[str] = field(default_factory=list)


def named_objects(session: Session, target: Target,
                  selecting: bool) -> list[tuple[ResourceInfo, str | None, str]]:
    """(info, namespace, name) for each name of `target`; names and a selector exclude each
    other, as in kubectl."""
    if selecting:
        raise CLIError("name cannot be provided when a selector is specified")
    ns = session.namespace_of(target.info)
    return [(target.info, ns, name) for name in target.names]


def parse_resource_args(session: Session, args: list[str],
                        verb: str = "get") -> tuple[list[Target], bool]:
    """kubectl's resource arguments: `svc web`, `svc,deploy`, `svc/web deploy/api`, `all`.

    Returns the targets and whether a single item was implied (one type, one name), which
    decides between printing an object and a List.
    """
    if not args:
        raise CLIError(f'You must specify the type of resource to {verb}. Use "meshctl '
                       f'api-resources" for a complete list of supported resources.')
    if any("/" in a for a in args):
        targets: list[Target] = []
        for a in args:
            kind, sep, name = a.partition("/")
            if not sep or not kind or not name:
                raise CLIError(
                    f"there is no need to specify a resource type as a separate argument when "
                    f"passing arguments in resource/name form (e.g. 'meshctl {verb} "
                    f"resource/<resource_name>' instead of 'meshctl {verb} resource "
                    f"resource/<resource_name>'")
            info = session.lookup(kind)
            existing = next((t for t in targets if t.info == info), None)
            if existing is None:
                targets.append(Target(info, [name]))
            elif name not in existing.names:
                existing.names.append(name)
        return targets, len(args) == 1
    kinds = [k for k in args[0].split(",") if k]
    names = list(dict.fromkeys(args[1:]))
    infos: list[ResourceInfo] = []
    for kind in kinds:
        expanded = session.mapper.category(kind) if kind == "all" or _is_category(kind) else []
        if expanded:
            infos.extend(i for i in expanded if i not in infos)
            continue
        info = session.lookup(kind)
        if info not in infos:
            infos.append(info)
    targets = [Target(i, list(names)) for i in infos]
    single = len(targets) == 1 and len(names) == 1 and len(kinds) == 1 and kinds[0] != "all"
    return targets, single


def _is_category(name: str) -> bool:
    return name == "all"
