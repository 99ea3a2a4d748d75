"""Kubeconfig files: find them, merge them, pick a context, write changes back.

Theory of operation
-------------------
The rules are client-go's (k8s.io/client-go/tools/clientcmd/loader.go), so a kubeconfig that
works with kubectl works here and edits land in the same file kubectl would choose:

- Which files: `--kubeconfig PATH` alone if given (it must exist); else every entry of
  `$KUBECONFIG` (colon separated, missing files ignored); else the default chain, which for
  meshnet is the admin kubeconfig a local API server writes (`$MESHNET_DATA_DIR/admin.kubeconfig`,
  `/var/lib/meshnet/admin.kubeconfig` as root, `~/.local/share/meshnet/admin.kubeconfig`
  otherwise) followed by `~/.kube/config`.
- Merging: for clusters, users and contexts the first file that defines a name wins;
  `current-context` comes from the first file that sets it.
- Relative paths inside a file (certificate-authority, client-certificate, client-key,
  tokenFile) are relative to that file's directory.
- Writing: a new `current-context` goes to the first file that already sets one (else the
  default file); a changed context goes back to the file that defines it (else the default
  file). The default file is the explicit file, or the first existing file of the chain, or its
  last entry when none exists yet.

Files are parsed once; `Kubeconfig` keeps each file's document so that a write changes only the
entry it means to and keeps everything else in that file.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass, field


from .errors import ConfigError
from .failover import SERVERS_EXTENSION, split_servers

ADMIN_KUBECONFIG = "admin.kubeconfig"


def meshnet_data_dir(env: dict | None = None, euid: int | None = None) -> str:
    """Where a local meshnet control plane keeps its state (and its admin kubeconfig)."""
    env = os.environ if env is None else env
    if env.get("MESHNET_DATA_DIR"):
        return env["MESHNET_DATA_DIR"]
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return "/var/lib/meshnet"
    home = env.get("HOME") or os.path.expanduser("~")
    xdg = env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return os.path.join(xdg, "meshnet")


def default_chain(env: dict | None = None, euid: int | None = None) -> list[str]:
    env = os.environ if env is None else env
    home = env.get("HOME") or os.path.expanduser("~")
    return [
        os.path.join(meshnet_data_dir(env, euid), ADMIN_KUBECONFIG),
        os.path.join(home, ".kube", "config"),
    ]


def precedence(explicit: str | None = None, env: dict | None = None,
               euid: int | None = None) -> tuple[list[str], bool]:
    """The files to read, in order, and whether they came from --kubeconfig."""
    env = os.environ if env is None else env
    if explicit:
        return [explicit], True
    value = env.get("KUBECONFIG", "")
    if value:
        seen: list[str] = []
        for part in value.split(os.pathsep):
            if part and part not in seen:
                seen.append(part)
        if seen:
            return seen, False
    return default_chain(env, euid), False


@dataclass
class ConfigFile:
    path: str
    data: dict
    exists: bool

    @property
    def directory(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))


@dataclass(frozen=True)
class ClusterConnection:
    """Everything needed to reach and authenticate to an API server.

    `server` is the first (preferred) API server; `servers` all of them in order, `server`
    included (several API servers sharing one store: see failover.py)."""

    server: str
    context: str = ""
    cluster: str = ""
    user: str = ""
    namespace: str = ""
    ca_file: str | None = None
    ca_data: bytes | None = None  # PEM
    insecure: bool = False
    tls_server_name: str | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = None
    cert_file: str | None = None
    cert_data: bytes | None = None  # PEM
    key_file: str | None = None
    key_data: bytes | None = field(default=None, repr=False)
    servers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Built with `server` only (the common case): it is the one server.
        object.__setattr__(self, "servers", split_servers((self.server, *self.servers)))

    def __repr__(self) -> str:
        auth = "token" if self.token else "cert" if (self.cert_file or self.cert_data) else \
            "basic" if self.username else "none"
        more = f" (+{len(self.servers) - 1} servers)" if len(self.servers) > 1 else ""
        return f"<ClusterConnection {self.context or '-'} {self.server}{more} auth={auth}>"


_NAMED = (("clusters", "cluster"), ("contexts", "context"), ("users", "user"))
_PATH_KEYS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile"),
}
_REDACT = {
    "certificate-authority-data": "DATA+OMITTED",
    "client-certificate-data": "DATA+OMITTED",
    "client-key-data": "DATA+OMITTED",
    "token": "REDACTED",
    "password": "REDACTED",
}


def _load_file(path: str) -> ConfigFile:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return ConfigFile(path, {}, False)
    except OSError as e:
        raise ConfigError(f'error loading config file "{path}": {e.strerror}') from None
    try:
        # JSON (a YAML subset kubectl reads too): daemons given a JSON kubeconfig never load
        # PyYAML (~1.2 MiB each). Flow-style YAML that is not JSON still goes to PyYAML.
        if not text.lstrip().startswith("{"):
            raise ValueError
        data = json.loads(text)
    except ValueError:
        data = _load_yaml(path, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f'error loading config file "{path}": expected a kubeconfig mapping '
                          f'(apiVersion: v1, kind: Config), got {type(data).__name__}')
    for section, _ in _NAMED:
        entries = data.get(section)
        if entries is not None and not isinstance(entries, list):
            raise ConfigError(f'error loading config file "{path}": {section} must be a list')
    return ConfigFile(path, data, True)


def _load_yaml(path: str, text: str):
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f'error loading config file "{path}": {where}{problem}') from None


def _entries(data: dict, section: str, inner: str) -> list[tuple[str, dict]]:
    out = []
    for item in data.get(section) or []:
        if isinstance(item, dict) and item.get("name"):
            out.append((str(item["name"]), dict(item.get(inner) or {})))
    return out


def _dump(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True, width=10**9)


class Kubeconfig:
    """The merged view of one or more kubeconfig files."""

    def __init__(self, files: list[ConfigFile], explicit: bool = False):
        self.files = files
        self.explicit = explicit

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, explicit: str | None = None, env: dict | None = None,
             euid: int | None = None) -> "Kubeconfig":
        paths, is_explicit = precedence(explicit, env, euid)
        files = [_load_file(p) for p in paths]
        if is_explicit and not files[0].exists:
            raise ConfigError(f"stat {explicit}: no such file or directory")
        return cls(files, is_explicit)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    @property
    def empty(self) -> bool:
        return not any(f.data for f in self.files)

    def _merged(self, section: str, inner: str) -> dict[str, tuple[dict, ConfigFile]]:
        merged: dict[str, tuple[dict, ConfigFile]] = {}
        for f in self.files:
            for name, entry in _entries(f.data, section, inner):
                merged.setdefault(name, (entry, f))
        return merged

    @property
    def current_context(self) -> str:
        for f in self.files:
            if f.data.get("current-context"):
                return str(f.data["current-context"])
        return ""

    def contexts(self) -> dict[str, dict]:
        return {n: e for n, (e, _) in self._merged("contexts", "context").items()}

    def clusters(self) -> dict[str, dict]:
        return {n: e for n, (e, _) in self._merged("clusters", "cluster").items()}

    def users(self) -> dict[str, dict]:
        return {n: e for n, (e, _) in self._merged("users", "user").items()}

    def _resolved(self, section: str, inner: str, name: str) -> dict | None:
        """An entry with its relative paths made absolute against its own file."""
        found = self._merged(section, inner).get(name)
        if found is None:
            return None
        entry, f = found
        entry = dict(entry)
        for key in _PATH_KEYS.get(inner, ()):
            value = entry.get(key)
            if value and not os.path.isabs(str(value)):
                entry[key] = os.path.join(f.directory, str(value))
        return entry

    # -------------------------------------------------------------- resolution

    def connection(self, context: str | None = None, *, cluster: str | None = None,
                   user: str | None = None, server: str | None = None,
                   token: str | None = None, insecure: bool | None = None,
                   ca_file: str | None = None, namespace: str | None = None,
                   tls_server_name: str | None = None) -> ClusterConnection:
        """Resolve the context (or the current one) and the overrides into a connection."""
        ctx_name = context or self.current_context
        ctx: dict = {}
        if ctx_name:
            found = self.contexts().get(ctx_name)
            if found is None:
                if context:
                    raise ConfigError(f'context "{ctx_name}" does not exist')
                raise ConfigError(
                    f'invalid configuration: current-context "{ctx_name}" names no context '
                    f'(files: {", ".join(self.paths)}); pick one with '
                    f"'meshctl config use-context NAME'")
            ctx = found
        elif not server:
            looked = ", ".join(self.paths)
            raise ConfigError(
                "no configuration has been provided: no kubeconfig with a current context found "
                f"(looked in {looked}); start a local control plane with 'meshnet-apiserver', "
                "or pass --kubeconfig / set KUBECONFIG")
        cluster_name = cluster or str(ctx.get("cluster") or "")
        user_name = user or str(ctx.get("user") or "")
        cl = self._resolved("clusters", "cluster", cluster_name) if cluster_name else None
        if cluster_name and cl is None and not server:
            raise ConfigError(f'invalid configuration: cluster "{cluster_name}" (context '
                              f'"{ctx_name}") is not defined in {", ".join(self.paths)}')
        cl = cl or {}
        us = (self._resolved("users", "user", user_name) if user_name else None) or {}
        if user_name and not us and self.users().get(user_name) is None and not token:
            raise ConfigError(f'invalid configuration: user "{user_name}" (context '
                              f'"{ctx_name}") is not defined in {", ".join(self.paths)}')
        for unsupported in ("exec", "auth-provider"):
            if us.get(unsupported):
                raise ConfigError(f'user "{user_name}" uses an {unsupported} credential plugin, '
                                  f"which meshctl does not support; use a token or client "
                                  f"certificate instead")
        servers = split_servers(server) if server else \
            split_servers([str(cl.get("server") or ""), *_extra_servers(cl, cluster_name)])
        if not servers or not (server or cl.get("server")):
            raise ConfigError(f'invalid configuration: cluster "{cluster_name}" has no server '
                              f"defined")
        tok = token if token is not None else us.get("token")
        if not tok and us.get("tokenFile"):
            try:
                with open(us["tokenFile"], encoding="utf-8") as f:
                    tok = f.read().strip()
            except OSError as e:
                raise ConfigError(f'user "{user_name}": cannot read tokenFile '
                                  f'{us["tokenFile"]}: {e.strerror}') from None
        return ClusterConnection(
            server=servers[0],
            servers=servers,
            context=ctx_name,
            cluster=cluster_name,
            user=user_name,
            namespace=namespace if namespace is not None else str(ctx.get("namespace") or ""),
            ca_file=ca_file or cl.get("certificate-authority") or None,
            ca_data=None if ca_file else _b64(cl.get("certificate-authority-data"),
                                              "certificate-authority-data", cluster_name),
            insecure=bool(cl.get("insecure-skip-tls-verify")) if insecure is None else insecure,
            tls_server_name=tls_server_name or cl.get("tls-server-name") or None,
            token=tok or None,
            username=us.get("username") or None,
            password=us.get("password") or None,
            cert_file=us.get("client-certificate") or None,
            cert_data=_b64(us.get("client-certificate-data"), "client-certificate-data",
                           user_name),
            key_file=us.get("client-key") or None,
            key_data=_b64(us.get("client-key-data"), "client-key-data", user_name),
        )

    # ---------------------------------------------------------------- viewing

    def view(self, *, minify: bool = False, raw: bool = False, flatten: bool = False,
             context: str | None = None) -> dict:
        """The merged config as `kubectl config view` shows it."""
        clusters = self._merged("clusters", "cluster")
        contexts = self._merged("contexts", "context")
        users = self._merged("users", "user")
        current = self.current_context
        if minify:
            name = context or current
            if not name:
                raise ConfigError("current-context must exist in order to minify")
            if name not in contexts:
                raise ConfigError(f'cannot locate context {name}')
            ctx = contexts[name][0]
            contexts = {name: contexts[name]}
            clusters = {k: v for k, v in clusters.items() if k == ctx.get("cluster")}
            users = {k: v for k, v in users.items() if k == ctx.get("user")}
            current = name

        def render(section: str, inner: str, merged: dict) -> list[dict]:
            out = []
            for name in sorted(merged):
                entry, f = merged[name]
                entry = dict(entry)
                if flatten:
                    entry = _flatten(entry, inner, f)
                if not raw:
                    for key, mask in _REDACT.items():
                        if entry.get(key):
                            entry[key] = mask
                out.append({"name": name, inner: entry})
            return out

        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": render("clusters", "cluster", clusters),
            "contexts": render("contexts", "context", contexts),
            "current-context": current,
            "preferences": {},
            "users": render("users", "user", users),
        }
        return doc

    # ---------------------------------------------------------------- writing

    def default_file(self) -> ConfigFile:
        if self.explicit:
            return self.files[0]
        for f in self.files:
            if f.exists:
                return f
        return self.files[-1]

    def _file_defining(self, section: str, inner: str, name: str) -> ConfigFile | None:
        found = self._merged(section, inner).get(name)
        return found[1] if found else None

    def use_context(self, name: str) -> str:
        """Make `name` the current context; returns the file written."""
        if name not in self.contexts():
            raise ConfigError(f'no context exists with the name: "{name}"')
        target = None
        if not self.explicit:
            target = next((f for f in self.files if f.data.get("current-context")), None)
        target = target or self.default_file()
        target.data["current-context"] = name
        self._write(target)
        return target.path

    def unset_current_context(self) -> str:
        target = next((f for f in self.files if f.data.get("current-context")), None)
        target = target or self.default_file()
        target.data["current-context"] = ""
        self._write(target)
        return target.path

    def set_context(self, name: str, *, cluster: str | None = None, user: str | None = None,
                    namespace: str | None = None) -> bool:
        """Create or modify a context; returns True if it was created."""
        target = self._file_defining("contexts", "context", name)
        created = target is None
        target = target or self.default_file()
        items = target.data.get("contexts")
        if items is None:
            items = target.data["contexts"] = []
        if not isinstance(items, list):
            raise ConfigError(f'"{target.path}": contexts must be a list')
        entry = next((i for i in items if isinstance(i, dict) and i.get("name") == name), None)
        if entry is None:
            entry = {"name": name, "context": {}}
            items.append(entry)
        ctx = entry.setdefault("context", {}) or {}
        entry["context"] = ctx
        for key, value in (("cluster", cluster), ("user", user), ("namespace", namespace)):
            if value is None:
                continue
            if value == "":
                ctx.pop(key, None)
            else:
                ctx[key] = value
        self._write(target)
        return created

    def delete_context(self, name: str) -> str:
        target = self._file_defining("contexts", "context", name)
        if target is None:
            raise ConfigError(f"cannot delete context {name}, not in {', '.join(self.paths)}")
        target.data["contexts"] = [i for i in target.data.get("contexts") or []
                                   if not (isinstance(i, dict) and i.get("name") == name)]
        self._write(target)
        return target.path

    def _write(self, f: ConfigFile) -> None:
        data = f.data
        data.setdefault("apiVersion", "v1")
        data.setdefault("kind", "Config")
        for section, _ in _NAMED:
            data.setdefault(section, [])
        data.setdefault("preferences", {})
        data.setdefault("current-context", "")
        directory = os.path.dirname(os.path.abspath(f.path))
        os.makedirs(directory, exist_ok=True)
        # Atomic replace, private mode: kubeconfigs hold credentials.
        fd, tmp = tempfile.mkstemp(prefix=".kubeconfig-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(_dump(data))
            os.chmod(tmp, 0o600)
            os.replace(tmp, f.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        f.exists = True

    def __repr__(self) -> str:
        return f"<Kubeconfig {':'.join(self.paths)} current={self.current_context or '-'}>"


def _extra_servers(cluster: dict, name: str) -> list[str]:
    """The `meshnet.io/servers` extension of a cluster entry:

        extensions:
        - name: meshnet.io/servers
          extension: {servers: [https://10.0.0.2:6443, https://10.0.0.3:6443]}
    """
    for ext in cluster.get("extensions") or []:
        if not isinstance(ext, dict) or ext.get("name") != SERVERS_EXTENSION:
            continue
        body = ext.get("extension")
        servers = body.get("servers") if isinstance(body, dict) else None
        if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
            raise ConfigError(f'cluster "{name}": extension {SERVERS_EXTENSION} must be '
                              f"{{servers: [https://HOST:PORT, ...]}}")
        return servers
    return []


def _b64(value, what: str, owner: str) -> bytes | None:
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=False)
    except ValueError:
        raise ConfigError(f'"{owner}": {what} is not valid base64') from None


def _flatten(entry: dict, inner: str, f: ConfigFile) -> dict:
    """Inline referenced files as *-data fields (`kubectl config view --flatten`)."""
    pairs = {"cluster": (("certificate-authority", "certificate-authority-data"),),
             "user": (("client-certificate", "client-certificate-data"),
                      ("client-key", "client-key-data"))}.get(inner, ())
    for path_key, data_key in pairs:
        path = entry.pop(path_key, None)
        if path:
            full = path if os.path.isabs(path) else os.path.join(f.directory, path)
            try:
                with open(full, "rb") as fh:
                    entry[data_key] = base64.b64encode(fh.read()).decode()
            except OSError as e:
                raise ConfigError(f"cannot read {full}: {e.strerror}") from None
    return entry
