"""`meshctl create`: objects from flags (namespace, deployment, service, configmap, secret)
or from files (`create -f`).

The `build_*` functions are pure and return objects field for field as kubectl's generators
do (same labels, `strategy: {}`, `resources: {}`, `status: {}`; like kubectl 1.33+, no `creationTimestamp: null`),
with keys in Go struct order so that `-o json` matches kubectl too (`-o yaml` sorts them).
`--dry-run=client` prints them without touching the server; otherwise they are POSTed.
"""

from __future__ import annotations

import argparse
import base64
import os
import ssl

from meshnet.api.names import is_config_map_key
from meshnet.api.resources import ResourceInfo, lookup
from meshnet.client.errors import ApiError

from .apply import plan
from .context import Session
from .errors import CLIError, Reported, api_error_text
from .flags import add_bool, add_dry_run, add_filename_flags, add_output_flag
from .patch import with_last_applied
from .printers import OutputSpec, object_ref, parse_output, render_objects



# ---------------------------------------------------------------- builders


def _meta(name: str, namespace: str | None, labels: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def container_name(image: str) -> str:
    """kubectl's buildPodSpec: last path element, without tag or digest, `_` -> `-`."""
    name = image.split("/")[-1]
    name = name.split("@")[0].split(":")[0]
    return name.replace("_", "-").lower()


def build_namespace(name: str) -> dict:
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": _meta(name, None),
            "spec": {}, "status": {}}


def build_deployment(name: str, images: list[str], replicas: int = 1, port: int | None = None,
                     namespace: str | None = None) -> dict:
    if not images:
        raise CLIError('required flag(s) "image" not set')
    labels = {"app": name}
    containers = []
    for image in images:
        containers.append({"name": container_name(image), "image": image})
    if port is not None and port >= 0:
        containers[0]["ports"] = [{"containerPort": port}]
    for c in containers:
        c["resources"] = {}
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": _meta(name, namespace, dict(labels)),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": containers},
            },
            "strategy": {},
        },
        "status": {},
    }


SERVICE_TYPES = {"clusterip": "ClusterIP", "nodeport": "NodePort",
                 "loadbalancer": "LoadBalancer", "externalname": "ExternalName"}


def _port_number(text: str) -> int:
    if not text.isdigit():
        raise CLIError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    value = int(text)
    if not 0 <= value <= 65535:
        raise CLIError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


def parse_tcp(spec: str) -> dict:
    """`5678:8080` -> port 5678 named "5678-8080" to 8080; `443` -> port 443 named "443"."""
    port_text, sep, target_text = spec.partition(":")
    port = _port_number(port_text)
    if sep:
        target: int | str = int(target_text) if target_text.isdigit() else target_text
        if not target_text:
            raise CLIError(f'invalid port spec "{spec}": expected PORT or PORT:TARGET_PORT')
        name = f"{port_text}-{target_text}"
    else:
        target = port
        name = port_text
    return {"name": name, "protocol": "TCP", "port": port, "targetPort": target}


def build_service(kind: str, name: str, tcp: list[str], *, node_port: int | None = None,
                  cluster_ip: str | None = None, external_name: str | None = None,
                  namespace: str | None = None) -> dict:
    svc_type = SERVICE_TYPES[kind]
    if svc_type == "ExternalName":
        if not external_name:
            raise CLIError('required flag(s) "external-name" not set')
    elif not tcp and cluster_ip != "None":
        raise CLIError("at least one tcp port specifier must be provided")
    ports = [parse_tcp(t) for t in tcp]
    if node_port:
        for p in ports:
            p["nodePort"] = node_port
    labels = {"app": name}
    spec: dict = {}
    if ports:
        spec["ports"] = ports
    spec["selector"] = dict(labels)
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    spec["type"] = svc_type
    if external_name:
        spec["externalName"] = external_name
    return {"kind": "Service", "apiVersion": "v1", "metadata": _meta(name, namespace, labels),
            "spec": spec, "status": {"loadBalancer": {}}}


def _check_key(key: str, kind: str) -> None:
    errors = is_config_map_key(key)
    if errors:
        raise CLIError(f'"{key}" is not a valid key name for a {kind}: {"; ".join(errors)}')


def collect_sources(literals: list[str], files: list[str], env_files: list[str], kind: str,
                    name: str, read=None) -> list[tuple[str, bytes]]:
    """(key, raw bytes) from --from-literal / --from-file / --from-env-file, checked."""
    read = read or _read_bytes
    items: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def add(key: str, value: bytes) -> None:
        _check_key(key, kind)
        if key in seen:
            raise CLIError(f'cannot add key "{key}", another key by that name already exists in '
                           f'Data for {kind} "{name}"')
        seen.add(key)
        items.append((key, value))

    for spec in files:
        key, sep, path = spec.partition("=")
        if not sep:
            path, key = spec, ""
        if os.path.isdir(path):
            if key:
                raise CLIError(f'cannot give a key name for a directory path "{path}"')
            for entry in sorted(os.listdir(path)):
                full = os.path.join(path, entry)
                if os.path.isfile(full) and not is_config_map_key(entry):
                    add(entry, read(full))
            continue
        if not os.path.exists(path):
            raise CLIError(f"error reading {path}: no such file or directory")
        add(key or os.path.basename(path), read(path))
    for spec in literals:
        key, sep, value = spec.partition("=")
        if not sep:
            raise CLIError(f'invalid literal source {spec}, expected key=value')
        add(key, value.encode())
    for path in env_files:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise CLIError(f"error reading {path}: {e.strerror}") from None
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            key, sep, value = line.lstrip().partition("=")
            if not sep:
                value = os.environ.get(key.strip(), "")
            add(key.strip(), value.encode())
    return items


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CLIError(f"error reading {path}: {e.strerror}") from None


def build_configmap(name: str, items: list[tuple[str, bytes]],
                    namespace: str | None = None) -> dict:
    data: dict = {}
    binary: dict = {}
    for key, raw in items:
        try:
            data[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(raw).decode()
    obj: dict = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": _meta(name, namespace)}
    if data:
        obj["data"] = data
    if binary:
        obj["binaryData"] = binary
    return obj


def build_secret(name: str, items: list[tuple[str, bytes]], secret_type: str = "",
                 namespace: str | None = None) -> dict:
    obj: dict = {"kind": "Secret", "apiVersion": "v1", "metadata": _meta(name, namespace)}
    if items:
        obj["data"] = {k: base64.b64encode(v).decode() for k, v in items}
    if secret_type:
        obj["type"] = secret_type
    return obj


def build_tls_secret(name: str, cert_path: str, key_path: str,
                     namespace: str | None = None) -> dict:
    if not cert_path or not key_path:
        missing = [f'"{f}"' for f, v in (("cert", cert_path), ("key", key_path)) if not v]
        raise CLIError(f"required flag(s) {' '.join(missing)} not set")
    cert = _read_bytes(cert_path)
    key = _read_bytes(key_path)
    try:
        # The same check as kubectl's tls.X509KeyPair: the key must belong to the certificate.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    except ssl.SSLError as e:
        raise CLIError(f"failed to load key pair tls: {e.reason or e}") from None
    return build_secret(name, [("tls.crt", cert), ("tls.key", key)], "kubernetes.io/tls",
                        namespace)


# ------------------------------------------------------------------ running


def _add_common(p: argparse.ArgumentParser) -> None:
    add_dry_run(p)
    add_output_flag(p, "Output format. One of: (json, yaml, name).")
    add_bool(p, "--save-config", help="If true, the configuration of current object will be "
                                      "saved in its annotation.")


def _finish(s: Session, args, obj: dict, plural: str) -> int:
    """Print (dry run) or create `obj` and print the result like kubectl create."""
    info = lookup(plural)
    spec = parse_output(args.output, ("json", "yaml", "name")) if args.output else None
    if args.save_config:
        obj = with_last_applied(obj)
    return create_and_print(s, info, obj, s.namespace_of(info), spec, args.dry_run, "created")


def create_and_print(s: Session, info: ResourceInfo, obj: dict, ns: str | None,
                     spec: OutputSpec | None, dry_run: str, verb: str) -> int:
    """Create `obj` (or only print it, for --dry-run=client) and report it the kubectl way:
    `<kind>/<name> <verb>`, or the object in the `-o` format `spec` when one was asked for."""
    name = obj["metadata"]["name"]
    if dry_run == "client":
        if spec is None:
            s.out(f"{object_ref(info, name)} {verb} (dry run)\n")
        else:
            s.out(render_objects([obj], [info], spec, single=True, sort_keys=False))
        return 0
    try:
        created = s.client.create(info, obj, ns, dry_run=dry_run == "server")
    except ApiError as e:
        s.err(api_error_text(e))
        raise Reported() from None
    if spec is None:
        suffix = " (server dry run)" if dry_run == "server" else ""
        s.out(f"{object_ref(info, name)} {verb}{suffix}\n")
    else:
        s.out(render_objects([created], [info], spec, single=True))
    return 0


def _ns_for_object(s: Session) -> str | None:
    """kubectl puts metadata.namespace into generated objects only when -n was given."""
    return s.namespace if s.namespace_explicit else None


def configure_root(p: argparse.ArgumentParser) -> None:
    add_filename_flags(p, "to use to create the resource")
    _add_common(p)


def run_root(args, s: Session) -> int:
    if not args.filename:
        raise CLIError("must specify one of -f and -k\nUse 'meshctl create --help' to see the "
                       "generators (namespace, deployment, service, configmap, secret)")
    spec = parse_output(args.output, ("json", "yaml", "name")) if args.output else None
    failed = False
    for p in plan(s, args, "create"):
        obj = with_last_applied(p.obj) if args.save_config else p.obj
        if args.dry_run == "client":
            result = obj
        else:
            try:
                result = s.client.create(p.info, obj, p.namespace,
                                         dry_run=args.dry_run == "server")
            except ApiError as e:
                s.err(api_error_text(e, f'error when creating "{p.manifest.source}": '))
                failed = True
                continue
        if spec is None:
            suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(args.dry_run, "")
            s.out(f"{object_ref(p.info, p.name)} created{suffix}\n")
        else:
            s.out(render_objects([result], [p.info], spec, single=True))
    if failed:
        raise Reported()
    return 0


def configure_namespace(p):
    p.add_argument("name", metavar="NAME")
    _add_common(p)


def run_namespace(args, s: Session) -> int:
    return _finish(s, args, build_namespace(args.name), "namespaces")


def configure_deployment(p):
    p.add_argument("name", metavar="NAME")
    p.add_argument("--image", action="append", default=[], metavar="IMAGE",
                   help="Image names to run. A deployment can have multiple images set for "
                        "multi-container pod.")
    p.add_argument("-r", "--replicas", type=int, default=1,
                   help="Number of replicas to create. Default is 1.")
    p.add_argument("--port", type=int, default=-1,
                   help="The containerPort that this deployment exposes.")
    _add_common(p)


def run_deployment(args, s: Session) -> int:
    obj = build_deployment(args.name, args.image, args.replicas, args.port, _ns_for_object(s))
    return _finish(s, args, obj, "deployments")


def configure_service(kind: str):
    def configure(p):
        p.add_argument("name", metavar="NAME")
        p.add_argument("--tcp", action="append", default=[], metavar="PORT[:TARGET]",
                       help="Port pairs can be specified as '<port>:<targetPort>'.")
        if kind == "clusterip":
            p.add_argument("--clusterip", default=None,
                           help="Assign your own ClusterIP or set to 'None' for a 'headless' "
                                "service (no loadbalancing).")
        if kind == "nodeport":
            p.add_argument("--node-port", type=int, default=0,
                           help="Port used to expose the service on each node in a cluster.")
        if kind == "externalname":
            p.add_argument("--external-name", default="",
                           help="External name of service")
        _add_common(p)
    return configure


def run_service(kind: str):
    def run(args, s: Session) -> int:
        obj = build_service(kind, args.name, args.tcp,
                            node_port=getattr(args, "node_port", None),
                            cluster_ip=getattr(args, "clusterip", None),
                            external_name=getattr(args, "external_name", None),
                            namespace=_ns_for_object(s))
        return _finish(s, args, obj, "services")
    return run


def _add_sources(p):
    p.add_argument("--from-literal", action="append", default=[], metavar="KEY=VALUE",
                   help="Specify a key and literal value to insert (i.e. mykey=somevalue)")
    p.add_argument("--from-file", action="append", default=[], metavar="[KEY=]SOURCE",
                   help="Key file can be specified using its file path, in which case file "
                        "basename will be used as key, or optionally with a key and file path, "
                        "in which case the given key will be used. Specifying a directory will "
                        "iterate each named file in the directory whose basename is a valid key.")
    p.add_argument("--from-env-file", action="append", default=[], metavar="FILE",
                   help="Specify the path to a file to read lines of key=val pairs.")


def configure_configmap(p):
    p.add_argument("name", metavar="NAME")
    _add_sources(p)
    _add_common(p)


def run_configmap(args, s: Session) -> int:
    items = collect_sources(args.from_literal, args.from_file, args.from_env_file, "ConfigMap",
                            args.name)
    return _finish(s, args, build_configmap(args.name, items, _ns_for_object(s)), "configmaps")


def configure_secret_generic(p):
    p.add_argument("name", metavar="NAME")
    _add_sources(p)
    p.add_argument("--type", default="", help="The type of secret to create")
    _add_common(p)


def run_secret_generic(args, s: Session) -> int:
    items = collect_sources(args.from_literal, args.from_file, args.from_env_file, "Secret",
                            args.name)
    return _finish(s, args, build_secret(args.name, items, args.type, _ns_for_object(s)),
                   "secrets")


def configure_secret_tls(p):
    p.add_argument("name", metavar="NAME")
    p.add_argument("--cert", default="", help="Path to PEM encoded public key certificate.")
    p.add_argument("--key", default="", help="Path to private key associated with given "
                                             "certificate.")
    _add_common(p)


def run_secret_tls(args, s: Session) -> int:
    obj = build_tls_secret(args.name, args.cert, args.key, _ns_for_object(s))
    return _finish(s, args, obj, "secrets")
