"""The `docker` runtime: a pod's containers are docker containers, wired like dockershim + CNI.

Theory of operation
-------------------
Per pod, as kubelet's dockershim did:

  create_sandbox   a "pause" container `k8s_POD_<pod>_<ns>_<uid>_0` (busybox `sleep`) created
                   with `network_mode: none` (docker gives it an empty network namespace and
                   never touches any network), `ipc_mode: shareable` and the pod's hostname.
                   Its namespace `/proc/<pid>/ns/net` is bound to the pod's netns name
                   (`ip netns attach mnpod-<uid16> <pid>`), which is all a CNI plugin needs:
                   podnet.setup_pod then finds the name and puts the veth's `eth0`, the pod IP
                   and the default route into *that* namespace, exactly as for the netns runtime.
  start            each container `k8s_<c>_<pod>_<ns>_<uid>_<restart>` with
                   `network_mode: container:<sandbox>` and `ipc_mode: container:<sandbox>`, so
                   every container of the pod shares its IP, loopback, hostname and IPC;
                   `/etc/netns/<netns>/resolv.conf` (cluster DNS) is bind-mounted read-only at
                   /etc/resolv.conf; volumes are bind mounts.
  wait / stop      `docker wait` / `docker stop -t grace` (SIGTERM, then SIGKILL); an exited
                   container is removed once its exit code and output are collected (the agent
                   keeps the logs, so `--previous` still works).
  remove_sandbox   force-removes the pause container; podnet.teardown_pod removes the veth and
                   the netns name.

Invariants: dockerd is only ever asked for `none`/`container:` networking, never a bridge or a
published port, so it cannot touch any network but the pods'. Every container carries the
label io.meshnet.node=<node>, which is how a restarted agent finds (and removes) exactly what an
earlier one left. The SDK is blocking: each call runs in a thread of its own (not the default
executor, which long `wait`/`logs` calls would exhaust and so stall podnet's netlink calls).

Images: no registry is reachable. `meshnet/echo` and `busybox` are *built* on first use from the
host's static busybox (Debian `busybox-static`), FROM scratch, with no RUN step (dockerd has no
build network). Anything not in dockerd's image store fails like a pull: ErrImagePull.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from meshnet.node.errors import AgentError, ImagePullError, PodError
from meshnet.node.images import Image, normalize
from meshnet.node.netconfig import pod_netns_name

log = logging.getLogger("meshnet.agent.docker")

BUSYBOX = Path("/bin/busybox")
NODE_LABEL = "io.meshnet.node"
UID_LABEL = "io.kubernetes.pod.uid"
DOWNWARD_LABEL = "io.meshnet.downward-env"  # image label: set POD_NAME & co. as defaults
SANDBOX_CMD = ["sleep", "2147483647"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
API_TIMEOUT_S = 60
MAX_CONNECTIONS = 256
API_VERSION = "1.41"  # docker 20.10 (Debian 12's docker.io); newer daemons still serve it

# -- built-in images ----------------------------------------------------------------------------

# meshnet/echo in busybox sh (no python in the image): `nc -ll -e` forks one handler per
# connection. HTTP and TCP echo as images/echo.py; busybox nc has no UDP, so no UDP echo.
ECHO_MAIN = r"""#!/bin/sh
: "${HTTP_PORT:=8080}" "${ECHO_PORT:=9000}"
nc -ll -p "$HTTP_PORT" -e /bin/meshnet-echo-http & http=$!
nc -ll -p "$ECHO_PORT" -e /bin/meshnet-echo-tcp & tcp=$!
echo "echo ${POD_NAME:-$(hostname)}: http :$HTTP_PORT, tcp echo :$ECHO_PORT"
trap 'echo "echo: SIGTERM, exiting"; kill $http $tcp; exit 0' TERM INT
wait
"""

ECHO_TCP = r"""#!/bin/sh
echo "${POD_NAME:-$(hostname)}"
exec cat
"""

# One request per connection (Connection: close); JSON like images/echo.py.
ECHO_HTTP = r"""#!/bin/sh
cr=$(printf '\r')
esc() {
  printf '%s' "$1" | tr -d '\000-\010\013-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' \
    -e 's/\t/\\t/g' | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
}
read -r method target version || exit 0
path=${target%%\?*}
query=""
case $target in *\?*) query=${target#*\?} ;; esac
host="" length=0 headers=""
while IFS= read -r line; do
  line=${line%"$cr"}
  [ -z "$line" ] && break
  name=${line%%:*}
  value=$(printf '%s' "${line#*:}" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
  case $(printf '%s' "$name" | tr A-Z a-z) in
    host) host=$value ;;
    content-length) length=$value ;;
  esac
  headers="$headers${headers:+, }\"$(esc "$name")\": \"$(esc "$value")\""
done
case $length in '' | *[!0-9]*) length=0 ;; esac
body=""
[ "$length" -gt 0 ] && body=$(head -c "$length")
status="200 OK"
case $path in
  /control/ready | /control/live)
    case "&$query&" in
      *"&ok=0&"* | *"&ok=false&"*) touch "/tmp/meshnet-${path##*/}-off" ;;
      *) rm -f "/tmp/meshnet-${path##*/}-off" ;;
    esac ;;
  /healthz) [ -e /tmp/meshnet-ready-off ] && status="503 Unavailable" ;;
  /livez) [ -e /tmp/meshnet-live-off ] && status="503 Unavailable" ;;
esac
doc=$(printf '{"pod": "%s", "namespace": "%s", "ip": "%s", "node": "%s", "method": "%s", "path": "%s", "query": "%s", "host": "%s", "headers": {%s}, "body": "%s"}' \
  "$(esc "${POD_NAME:-$(hostname)}")" "$(esc "$POD_NAMESPACE")" "$(esc "$POD_IP")" \
  "$(esc "$NODE_NAME")" "$(esc "$method")" "$(esc "$path")" "$(esc "$query")" "$(esc "$host")" \
  "$headers" "$(esc "$body")")
printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s\n' \
  "$status" "$((${#doc} + 1))" "$doc"
echo "$method $target ${status%% *}" >&2
"""

BUILTIN_DOCKERFILES = {
    "busybox": 'FROM scratch\nCOPY rootfs/ /\nENV PATH=%s\nCMD ["sh"]\n' % DEFAULT_PATH,
    "meshnet/echo": ('FROM scratch\nCOPY rootfs/ /\nENV PATH=%s\nLABEL %s=true\n'
                     'EXPOSE 8080 9000\nENTRYPOINT ["/bin/meshnet-echo"]\n'
                     % (DEFAULT_PATH, DOWNWARD_LABEL)),
}
ECHO_FILES = {"bin/meshnet-echo": ECHO_MAIN, "bin/meshnet-echo-tcp": ECHO_TCP,
              "bin/meshnet-echo-http": ECHO_HTTP}


def builtin_context(name: str, busybox: Path = BUSYBOX) -> bytes:
    """The build context (a tar) of a built-in image: a static busybox and its applet links."""
    data = busybox.read_bytes()
    # A dynamic busybox (Debian's `busybox` package) would fail in a FROM-scratch image with a
    # bare "no such file": say so here. PT_INTERP names the loader within the first page.
    if b"/ld-linux" in data[:4096] or b"/ld-musl" in data[:4096]:
        raise ImagePullError(f"{busybox} is dynamically linked; the docker runtime builds its "
                             f"images from a static busybox (apt-get install busybox-static)")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    files = {"Dockerfile": BUILTIN_DOCKERFILES[name].encode()}
    if name == "meshnet/echo":
        files.update({f"rootfs/{k}": v.encode() for k, v in ECHO_FILES.items()})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(path: str, content: bytes = b"", mode: int = 0o644, kind=tarfile.REGTYPE,
                link: str = "") -> None:
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 0
            info.size = len(content) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(content) if kind == tarfile.REGTYPE else None)

        for d in ("rootfs", "rootfs/bin", "rootfs/etc", "rootfs/root"):
            add(d, mode=0o755, kind=tarfile.DIRTYPE)
        add("rootfs/tmp", mode=0o1777, kind=tarfile.DIRTYPE)
        add("rootfs/bin/busybox", data, 0o755)
        for applet in applets:
            if applet != "busybox" and "/" not in applet:
                add(f"rootfs/bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
        add("rootfs/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        add("rootfs/etc/group", b"root:x:0:\n")
        for path, content in files.items():
            add(path, content, 0o755 if path.startswith("rootfs/bin/") else 0o644)
    return buf.getvalue()


def image_from_config(ref: str, inspect: dict) -> Image:
    """An `Image` (what podworker needs: entrypoint, cmd, env) from `docker image inspect`."""
    cfg = inspect.get("Config") or {}
    env = tuple(tuple(e.split("=", 1)) for e in cfg.get("Env") or [] if "=" in e)
    labels = cfg.get("Labels") or {}
    return Image(ref, tuple(cfg.get("Entrypoint") or ()), tuple(cfg.get("Cmd") or ()), env,
                 downward_env=labels.get(DOWNWARD_LABEL) == "true")


# -- the container ------------------------------------------------------------------------------

def _in_thread(fn, *args, **kwargs) -> asyncio.Future:
    """Run a blocking SDK call in a thread of its own; the result as a future."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def run():
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting task
            loop.call_soon_threadsafe(_settle, fut, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, fut, result, None)

    threading.Thread(target=run, daemon=True, name=f"docker-{fn.__name__}").start()
    return fut


def _settle(fut: asyncio.Future, result, exc: BaseException | None) -> None:
    if fut.done():
        return  # the awaiting task was cancelled meanwhile
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class DockerProcess:
    """A container's main process, with the face of asyncio.subprocess.Process that podworker
    and the agent API use: `pid`, `returncode`, `await wait()` (many may wait at once)."""

    def __init__(self, runtime: "DockerRuntime", container_id: str, pid: int, log_path: Path):
        self.runtime = runtime
        self.id = container_id
        self.pid = pid
        self.returncode: int | None = None
        self._done: asyncio.Future | None = None
        self._logs = threading.Thread(target=self._copy_logs, args=(log_path,), daemon=True)
        self._logs.start()

    def _copy_logs(self, path: Path) -> None:
        """stdout+stderr into the agent's log file, as the netns runtime writes it."""
        try:
            with open(path, "ab") as f:
                for chunk in self.runtime.api.logs(self.id, stream=True, follow=True):
                    f.write(chunk)
                    f.flush()
        except Exception as exc:  # the container vanished under us: the log simply ends
            log.debug("logs of %s: %s", self.id[:12], exc)

    def _wait_and_remove(self) -> int:
        import docker.errors

        try:
            code = self.runtime.api.wait(self.id)["StatusCode"]
        except docker.errors.NotFound:
            code = 137  # removed behind our back (leftover clean-up): it was killed
        self._logs.join(10)
        try:
            self.runtime.api.remove_container(self.id, force=True)
        except docker.errors.NotFound:
            pass
        return code

    async def wait(self) -> int:
        if self._done is None:
            self._done = _in_thread(self._wait_and_remove)
        self.returncode = await asyncio.shield(self._done)
        return self.returncode


@dataclass
class DockerContainer:
    pod_key: str
    name: str
    proc: DockerProcess
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def container_id(self) -> str:
        return f"docker://{self.proc.id}"

    def __repr__(self) -> str:
        state = "running" if self.proc.returncode is None else f"exited {self.proc.returncode}"
        return f"<DockerContainer {self.pod_key}/{self.name} {self.proc.id[:12]} {state}>"


def _dns_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in text)


class DockerRuntime:
    host_mount_targets = False  # containers have their own root: no mountPath on the host
    owns_netns = False  # dockerd keeps a sandbox mount of each pod's namespace for a while

    def __init__(self, docker_host: str, node_name: str):
        import docker

        self.docker_host = docker_host
        self.node_name = node_name
        # Each running container holds two connections (`wait`, `logs -f`) for its lifetime.
        self.api = docker.APIClient(base_url=docker_host, timeout=API_TIMEOUT_S,
                                    version=API_VERSION, max_pool_size=MAX_CONNECTIONS)
        self._build_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<DockerRuntime {self.docker_host} node={self.node_name}>"

    async def connect(self) -> str:
        """Check that dockerd answers; its version."""
        import docker.errors
        import requests

        try:
            version = await _in_thread(self.api.version)
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise AgentError(f"--docker-host {self.docker_host}: dockerd does not answer "
                             f"({exc}); start dockerd or fix the socket path") from None
        return version.get("Version", "?")

    async def close(self) -> None:
        """Nothing to stop: dockerd keeps running."""

    def _labels(self, uid: str, **extra: str) -> dict[str, str]:
        return {NODE_LABEL: self.node_name, UID_LABEL: uid, **extra}

    # -- images -------------------------------------------------------------------------------

    async def resolve_image(self, ref: str) -> Image:
        import docker.errors

        try:
            return image_from_config(ref, await _in_thread(self.api.inspect_image, ref))
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise ImagePullError(f'Failed to pull image "{ref}": {exc.explanation}') from None
        name = normalize(ref)
        if name not in BUILTIN_DOCKERFILES:
            raise ImagePullError(
                f'Failed to pull image "{ref}": not in dockerd\'s image store and no registry '
                f'is reachable; built-in images (built locally from busybox-static) are '
                f'{", ".join(sorted(BUILTIN_DOCKERFILES))}')
        async with self._build_lock:
            await _in_thread(self._build, name, ref)
        return image_from_config(ref, await _in_thread(self.api.inspect_image, ref))

    def _build(self, name: str, ref: str) -> None:
        import docker.errors

        try:
            self.api.inspect_image(ref)
            return  # another pod built it while we waited for the lock
        except docker.errors.ImageNotFound:
            pass
        try:
            context = builtin_context(name)
        except OSError as exc:
            raise ImagePullError(f'Failed to pull image "{ref}": building it needs the host\'s '
                                 f'static busybox: {exc} (apt-get install busybox-static)') from None
        image_id = ""
        for line in self.api.build(fileobj=io.BytesIO(context), custom_context=True,
                                   tag=f"{name}:latest", rm=True, decode=True):
            if "error" in line:
                raise ImagePullError(f'Failed to pull image "{ref}": build failed: '
                                     f'{line["error"].strip()}')
            image_id = (line.get("aux") or {}).get("ID", image_id)
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
        self.api.tag(image_id or f"{name}:latest", repo, tag or "latest")
        log.info("built image %s (%s) from %s", ref, image_id[:19], BUSYBOX)

    # -- the pod sandbox ----------------------------------------------------------------------

    def _sandbox_name(self, uid: str) -> str:
        return f"k8s_POD_{uid}"

    async def create_sandbox(self, *, uid: str, pod_key: str, hostname: str) -> None:
        """The pause container; its network namespace becomes the pod's netns name."""
        try:
            await self.resolve_image("busybox")
            pid = await _in_thread(self._create_sandbox, uid, pod_key, hostname)
        except PodError as exc:
            raise PodError(f"pod sandbox: {exc.message}") from None
        except Exception as exc:  # docker/requests errors: a sandbox failure, retried
            raise PodError(f"pod sandbox for {pod_key}: {exc}") from None
        netns = pod_netns_name(uid)
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "attach", netns, str(pid), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0 and b"exists" not in err:
            raise PodError(f"ip netns attach {netns} {pid}: {err.decode().strip()}")

    def _create_sandbox(self, uid: str, pod_key: str, hostname: str) -> int:
        import docker.errors

        name = self._sandbox_name(uid)
        try:
            state = self.api.inspect_container(name)["State"]
            if state.get("Running"):
                return state["Pid"]  # a retry after a half-finished attempt
            self.api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass
        hc = self.api.create_host_config(network_mode="none", ipc_mode="shareable")
        created = self.api.create_container(
            "busybox", SANDBOX_CMD, name=name, hostname=hostname[:63], host_config=hc,
            labels=self._labels(uid, **{"io.kubernetes.pod.name": pod_key,
                                        "io.kubernetes.docker.type": "podsandbox"}))
        self.api.start(created["Id"])
        return self.api.inspect_container(created["Id"])["State"]["Pid"]

    async def remove_sandbox(self, uid: str) -> None:
        import docker.errors

        try:
            await _in_thread(self.api.remove_container, self._sandbox_name(uid), force=True)
        except docker.errors.NotFound:
            pass

    async def remove_leftovers(self) -> int:
        """Force-remove every container an earlier agent of this node left; how many."""
        found = await _in_thread(self.api.containers, all=True,
                                 filters={"label": f"{NODE_LABEL}={self.node_name}"})
        for c in found:
            try:
                await _in_thread(self.api.remove_container, c["Id"], force=True)
            except Exception as exc:  # keep going: one stuck container must not stop start-up
                log.warning("removing leftover container %s: %s", c["Id"][:12], exc)
        return len(found)

    # -- containers ---------------------------------------------------------------------------

    async def start(self, *, pod_key: str, pod_dir: Path, netns: str, name: str,
                    restart: int, argv: list[str], env: dict[str, str], working_dir: str,
                    mounts: list[tuple[str, str, bool]], hostname: str,
                    image: str = "") -> DockerContainer:
        from meshnet.node.runtime import FailedProcess, log_path

        path = log_path(pod_dir, name, restart)
        path.parent.mkdir(parents=True, exist_ok=True)
        uid = pod_dir.name
        ns, _, pod = pod_key.partition("/")
        try:
            cid, pid = await _in_thread(self._start, f"k8s_{name}_{pod}_{ns}_{uid}_{restart}",
                                        uid, pod_key, name, image, netns, argv, env,
                                        working_dir, mounts)
        except Exception as exc:
            # The container could not start: like runc, a failed start is an exit 128 with
            # the reason in the container's log (podworker's restart policy takes over).
            with open(path, "ab") as f:
                f.write(f"meshnet: docker container create/start failed: {exc}\n".encode())
            return DockerContainer(pod_key, name, FailedProcess(128), path)
        return DockerContainer(pod_key, name, DockerProcess(self, cid, pid, path), path)

    def _start(self, cname: str, uid: str, pod_key: str, name: str, image: str, netns: str,
               argv: list[str], env: dict[str, str], working_dir: str,
               mounts: list[tuple[str, str, bool]]) -> tuple[str, int]:
        import docker.errors
        from docker.types import Mount

        try:
            self.api.remove_container(_dns_name(cname), force=True)  # an earlier crash's
        except docker.errors.NotFound:
            pass
        sandbox = self._sandbox_name(uid)
        binds = [Mount(target, source, type="bind", read_only=ro) for source, target, ro in mounts]
        resolv = Path("/etc/netns") / netns / "resolv.conf"
        if resolv.exists():
            binds.append(Mount("/etc/resolv.conf", str(resolv), type="bind", read_only=True))
        hc = self.api.create_host_config(network_mode=f"container:{sandbox}",
                                         ipc_mode=f"container:{sandbox}", mounts=binds)
        created = self.api.create_container(
            image, argv[1:], entrypoint=argv[:1], name=_dns_name(cname),
            environment=[f"{k}={v}" for k, v in env.items()], working_dir=working_dir or None,
            host_config=hc, labels=self._labels(uid, **{"io.kubernetes.pod.name": pod_key,
                                                        "io.kubernetes.container.name": name}))
        self.api.start(created["Id"])
        pid = self.api.inspect_container(created["Id"])["State"]["Pid"]
        return created["Id"], pid

    async def wait_started(self, container: DockerContainer) -> None:
        """`docker start` returns once the process runs; nothing to wait for."""

    async def stop(self, container: DockerContainer, grace_s: float) -> int:
        import docker.errors

        if container.proc.returncode is None and isinstance(container.proc, DockerProcess):
            try:  # SIGTERM, then SIGKILL after the grace period (whole seconds in docker)
                await _in_thread(self.api.stop, container.proc.id,
                                 timeout=max(0, math.ceil(grace_s)))
            except docker.errors.NotFound:
                pass
        return await container.proc.wait()

    def interactive_argv(self, container: DockerContainer, argv: list[str],
                         env: dict[str, str] | None = None,
                         tty: bool = False) -> tuple[list[str], dict[str, str]]:
        """`docker exec -i [-t]` (the docker CLI): streamed exec through dockerd, which gives
        the command the container's own environment."""
        if container.proc.returncode is not None or not isinstance(container.proc, DockerProcess):
            raise ProcessLookupError(f"container {container.name} is not running")
        return (["docker", "-H", self.docker_host, "exec", "-i", *(["-t"] if tty else []),
                 container.proc.id, *argv], {"PATH": DEFAULT_PATH})

    async def exec(self, container: DockerContainer, argv: list[str], timeout_s: float = 60.0,
                   env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
        """`docker exec`: the command runs in the container, with its environment."""
        if container.proc.returncode is not None or not isinstance(container.proc, DockerProcess):
            raise ProcessLookupError(f"container {container.name} is not running")

        def run() -> tuple[int, bytes, bytes]:
            ex = self.api.exec_create(container.proc.id, argv, environment=env or None)
            out, err = self.api.exec_start(ex["Id"], demux=True)
            return self.api.exec_inspect(ex["Id"])["ExitCode"], out or b"", err or b""

        try:
            return await asyncio.wait_for(_in_thread(run), timeout_s)
        except asyncio.TimeoutError:
            # TODO(with kubectl exec streaming): kill the exec'd process (exec_inspect's Pid).
            return 124, b"", f"command timed out after {timeout_s:g}s\n".encode()
