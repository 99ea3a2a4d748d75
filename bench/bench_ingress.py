"""Ingress benchmark (not a test): meshnet-ingress against nginx as a reverse proxy.

    .venv/bin/python bench/bench_ingress.py [--seconds 8] [--connections 50] [--profile DIR]

Installs the Debian packages it drives if missing (nginx-light, wrk), then in one run:

- a backend: nginx (one worker) answering every request with a fixed 13-byte 200 from memory
  (`return 200`), on 127.0.0.41. Both proxies forward to this same process;
- the reference proxy: nginx, one worker, on 127.0.0.42, configured as ingress-nginx's
  defaults configure it where they matter here: `proxy_pass` to an upstream block with
  `keepalive 320` (HTTP/1.1 pooled upstream connections), `multi_accept on`, the same
  X-Forwarded-*/X-Real-IP headers meshnet-ingress sets, TLS with the same certificate and
  ingress-nginx's TLS settings (`ssl_protocols TLSv1.2 TLSv1.3`, a 10m shared session cache,
  session tickets off, its cipher list, `ssl_buffer_size 4k`);
- meshnet-ingress on 127.0.0.40, following a meshnet-apiserver (Service, Endpoints, Ingress
  with a TLS section and ssl-redirect off, a kubernetes.io/tls Secret);
- wrk (one thread) for each of: keep-alive, a new connection per request (`Connection: close`),
  TLS keep-alive and TLS with a new connection per request; and the backend alone as the
  ceiling of the setup;
- then the whole machine: `meshnet-ingress --workers 2` against nginx `worker_processes 2`
  (both with SO_REUSEPORT listeners, as ingress-nginx's default `reuse-port`), keep-alive and a
  new connection per request, wrk with two threads; nothing pinned -- proxies, wrk and the
  backend share both CPUs as the scheduler likes.

Fairness, per core: each proxy is pinned to CPU 1 (`taskset`), one process/worker each; wrk
and the backend share CPU 0 (the machine this was written on has two). The whole-machine lines
pin nothing (the backend stays on CPU 0, one worker, for both proxies alike). Both proxies log
no access lines (nginx `access_log off`, meshnet-ingress `--log-level warning`), and nginx's
`keepalive_requests` limits (1000 by default, client and upstream side) are raised so that
neither proxy reconnects mid-run. Each proxy's CPU use during the run is reported: near 100%
means the proxy was the bottleneck, well below means the load side was.

TLS like for like: both proxies offer TLS 1.2 and 1.3 and wrk (OpenSSL 3) negotiates 1.3 with
both; both let wrk resume its session on every reconnect (meshnet-ingress with stateless
tickets, Python's default; nginx from its session cache, ingress-nginx's default). Debian's
nginx 1.22 on its own defaults offers TLS 1.2 at most, where a resumed handshake skips the
key exchange that TLS 1.3 resumption still makes -- half the CPU per handshake, on both
sides. `--nginx-debian-tls` runs nginx that way for comparison.

Results go to stdout and to bench/results/ingress-<date>.md. `--profile DIR` also records
py-spy profiles (collapsed stacks) of meshnet-ingress for each mode.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).parent.parent))

BACKEND_IP, MESHNET_IP, NGINX_IP = "127.0.0.41", "127.0.0.40", "127.0.0.42"
HOST = "bench.test"
BODY = "hello, bench\n"
PROXY_CPU, LOAD_CPU = "1", "0"
CLK_TCK = os.sysconf("SC_CLK_TCK")

MODES = [
    # (name, scheme, extra wrk headers)
    ("keep-alive", "http", []),
    ("new connection per request", "http", ["Connection: close"]),
    ("TLS, keep-alive", "https", []),
    ("TLS, new connection per request", "https", ["Connection: close"]),
]

# The whole-machine comparison (issue 8: one process per core with SO_REUSEPORT).
WORKERS = 2
WHOLE_MACHINE_MODES = MODES[:2]

WRK_REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def ensure_packages() -> None:
    need = [pkg for tool, pkg in (("nginx", "nginx-light"), ("wrk", "wrk"))
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    if not need:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"need root to apt-get install {' '.join(need)}")
    print(f"installing {' '.join(need)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *need], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {host}:{port} after {timeout}s")


def http_get(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), 2) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


NGINX_COMMON = """
worker_processes {workers};
{user}
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 16384; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  keepalive_requests 100000000;
{servers}
}}
"""

BACKEND_SERVER = """
  server {{
    listen {ip}:{port} backlog=4096;
    location / {{ default_type text/plain; return 200 "{body}"; }}
  }}
"""

# ingress-nginx's defaults (internal/ingress/controller/config/config.go: ssl-protocols,
# ssl-ciphers, ssl-session-cache(-size), ssl-session-tickets, ssl-session-timeout,
# ssl-buffer-size; nginx.tmpl: ssl_prefer_server_ciphers, ssl_ecdh_curve auto).
INGRESS_NGINX_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384"))
INGRESS_NGINX_TLS = f"""
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {INGRESS_NGINX_CIPHERS};
    ssl_prefer_server_ciphers on;
    ssl_ecdh_curve auto;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 10m;
    ssl_session_tickets off;
    ssl_buffer_size 4k;"""

PROXY_SERVER = """
  upstream backend {{ server {backend}; keepalive 320; keepalive_requests 100000000; }}
  server {{
    listen {ip}:{http_port} backlog=4096{reuseport};
    listen {ip}:{https_port} ssl backlog=4096{reuseport};
    server_name {host};
    ssl_certificate {dir}/tls.crt;
    ssl_certificate_key {dir}/tls.key;{tls}
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
    }}
  }}
"""


def pinned(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu is not None else []


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


class Nginx:
    def __init__(self, workdir: Path, servers: str, cpu: str | None, workers: int = 1):
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = workdir / "nginx.conf"
        conf.write_text(NGINX_COMMON.format(user=user, dir=workdir, servers=servers,
                                            workers=workers))
        self.proc = subprocess.Popen([*pinned(cpu), "nginx", "-c", str(conf), "-p",
                                      str(workdir), "-g", "daemon off;"],
                                     start_new_session=True)

    @property
    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Meshnet:
    """meshnet-apiserver (objects) and meshnet-ingress (the proxy)."""

    def __init__(self, workdir: Path, backend_port: int, cert: bytes, key: bytes):
        self.dir = workdir
        self.api = subprocess.Popen(
            ["taskset", "-c", LOAD_CPU, str(BIN / "meshnet-apiserver"), "--data-dir",
             str(workdir), "--listen", "127.0.0.1:0", "--log-level", "warning"],
            stdout=subprocess.PIPE, start_new_session=True)
        line = self.api.stdout.readline()
        if b"ready on" not in line:
            raise SystemExit(f"meshnet-apiserver did not start: {line!r}")
        self._apply_objects(workdir / "admin.kubeconfig", backend_port, cert, key)
        self.log = open(workdir / "ingress.log", "wb")
        self.proc: subprocess.Popen | None = None
        self.start_ingress(PROXY_CPU, 1)

    def start_ingress(self, cpu: str | None, workers: int) -> None:
        """(Re)starts meshnet-ingress, pinned to `cpu` (None: not pinned)."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
        status_port = free_port(MESHNET_IP)
        self.proc = subprocess.Popen(
            [*pinned(cpu), str(BIN / "meshnet-ingress"), "--kubeconfig",
             str(self.dir / "admin.kubeconfig"), "--http-listen", f"{MESHNET_IP}:0",
             "--https-listen", f"{MESHNET_IP}:0", "--status-listen",
             f"{MESHNET_IP}:{status_port}", "--default-ssl-certificate", "default/bench-cert",
             "--log-level", "warning", "--workers", str(workers)],
            stdout=subprocess.PIPE, stderr=self.log, start_new_session=True)
        line = self.proc.stdout.readline().decode()
        if "ready on" not in line:
            raise SystemExit(f"meshnet-ingress did not start: {line!r}")
        http, https = line.split("ready on ")[1].split()
        self.http_port = int(http.rsplit(":", 1)[1])
        self.https_port = int(https.rsplit(":", 1)[1])
        deadline = time.monotonic() + 15
        while not http_get(MESHNET_IP, self.http_port).startswith(b"HTTP/1.1 200"):
            if time.monotonic() > deadline:
                raise SystemExit("meshnet-ingress never routed bench.test")
            time.sleep(0.1)

    @property
    def pids(self) -> list[int]:
        """The processes that serve: the workers with --workers, else the one process."""
        return children(self.proc.pid) or [self.proc.pid]

    @staticmethod
    def _apply_objects(kubeconfig: Path, backend_port: int, cert: bytes, key: bytes) -> None:
        from meshnet.api.resources import lookup
        from meshnet.client.kubeconfig import Kubeconfig
        from meshnet.client.rest import RestClient

        client = RestClient(Kubeconfig.load(str(kubeconfig)).connection(None))
        meta = {"name": "bench", "namespace": "default"}
        client.create(lookup("Secret"), {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "bench-cert", "namespace": "default"},
            "data": {"tls.crt": base64.b64encode(cert).decode(),
                     "tls.key": base64.b64encode(key).decode()}}, "default")
        client.create(lookup("Service"), {
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}, "default")
        client.create(lookup("Endpoints"), {
            "apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
            "subsets": [{"addresses": [{"ip": BACKEND_IP}],
                         "ports": [{"name": "http", "port": backend_port,
                                    "protocol": "TCP"}]}]}, "default")
        client.create(lookup("Ingress"), {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {**meta, "annotations": {"meshnet.io/ssl-redirect": "false"}},
            "spec": {"ingressClassName": "meshnet",
                     "tls": [{"hosts": [HOST], "secretName": "bench-cert"}],
                     "rules": [{"host": HOST, "http": {"paths": [{
                         "path": "/", "pathType": "Prefix", "backend": {"service": {
                             "name": "bench", "port": {"name": "http"}}}}]}}]}}, "default")

    def stop(self) -> None:
        for proc in (self.proc, self.api):
            proc.terminate()
            proc.wait(15)
        self.log.close()


def wrk(url: str, headers: list[str], seconds: float, connections: int, script: Path,
        cpu: str | None = LOAD_CPU, threads: int = 1) -> dict:
    args = [*pinned(cpu), "wrk", "-t", str(threads), "-c", str(connections), "-d",
            f"{max(1, round(seconds))}s", "--timeout", "5s", "-s", str(script), "-H", f"Host: {HOST}"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run([*args, url], capture_output=True, timeout=seconds + 60).stdout
    for line in out.decode().splitlines():
        if line.startswith("WRK_JSON "):
            r = json.loads(line[len("WRK_JSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["status"]
            return r
    raise SystemExit(f"wrk printed no report: {out!r}")


def measure(url: str, headers: list[str], pids: list[int], args, script: Path, *,
            warm_up: bool = True, cpu: str | None = LOAD_CPU, threads: int = 1) -> dict:
    """wrk's figures, and "cpu": the CPU time of `pids` over the run per second of it."""
    if warm_up:
        wrk(url, headers, 1, args.connections, script, cpu, threads)  # pools, caches
    c0, t0 = sum(map(cpu_seconds, pids)), time.monotonic()
    r = wrk(url, headers, args.seconds, args.connections, script, cpu, threads)
    if pids:
        r["cpu"] = (sum(map(cpu_seconds, pids)) - c0) / (time.monotonic() - t0)
    return r


def profile(pid: int, url: str, headers: list[str], args, script: Path, out: Path) -> None:
    spy = subprocess.Popen([str(BIN / "py-spy"), "record", "-p", str(pid), "-d",
                            str(int(args.seconds)), "-r", "200", "-f", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wrk(url, headers, args.seconds, args.connections, script)
    spy.wait(args.seconds + 30)


def versions() -> str:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True).stderr.decode().strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True).stdout.decode().split("\n")[0]
    import httptools
    import uvloop
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return (f"{cpu}, {os.cpu_count()} CPUs; Linux {platform.release()}; "
            f"Python {platform.python_version()}, uvloop {uvloop.__version__}, httptools "
            f"{httptools.__version__}; {nginx}; {wrk_v.strip()}")


def median_by(rounds: list[tuple], side: int, key: str) -> dict:
    ordered = sorted((r[side] for r in rounds), key=lambda r: r[key])
    return ordered[len(ordered) // 2]


def figures(rounds: list[tuple]) -> tuple[dict, dict, float, float]:
    """(nginx's median round, meshnet's, the median ratio, the median ratio per CPU-second)."""
    ratio = statistics.median(m["rps"] / n["rps"] for n, m in rounds)
    per_cpu = statistics.median((m["rps"] / m["cpu"]) / (n["rps"] / n["cpu"])
                                for n, m in rounds)
    return median_by(rounds, 0, "rps"), median_by(rounds, 1, "rps"), ratio, per_cpu


def table(rows: list[tuple]) -> list[str]:
    lines = ["| mode | nginx req/s | meshnet req/s | ratio | ratio per CPU-second | "
             "nginx p99 | meshnet p99 | nginx CPU | meshnet CPU | errors (nginx/meshnet) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, rounds in rows:
        ng, me, ratio, per_cpu = figures(rounds)
        errors = (sum(n["errors"] for n, _ in rounds), sum(m["errors"] for _, m in rounds))
        lines.append(f"| {mode} | {ng['rps']:,.0f} | {me['rps']:,.0f} | **{ratio:.2f}x** | "
                     f"{per_cpu:.2f}x | {ng['p99_us'] / 1000:.2f} ms | "
                     f"{me['p99_us'] / 1000:.2f} ms | {ng['cpu']:.0%} | {me['cpu']:.0%} | "
                     f"{errors[0]}/{errors[1]} |")
    return lines


def render(rows: list[tuple], whole: list[tuple], args, direct: dict) -> str:
    lines = [f"# meshnet-ingress vs nginx reverse proxy — {time.strftime('%Y-%m-%d %H:%M')}", "",
             f"{versions()}", "",
             f"wrk: {args.connections} connections, {args.seconds:g} s per measurement, a 1 s "
             f"warm-up before each mode's first round. Backend: nginx `return 200` (13-byte "
             f"body), 1 worker on CPU {LOAD_CPU}; alone it serves {direct['rps']:,.0f} req/s "
             f"keep-alive (p99 {direct['p99_us'] / 1000:.2f} ms) on this setup.", "",
             f"## Per core: one worker each, proxies pinned to CPU {PROXY_CPU}, wrk (1 thread) "
             f"on CPU {LOAD_CPU}", "", *table(rows)]
    if whole:
        lines += ["", f"## Whole machine: meshnet-ingress --workers {WORKERS} vs nginx "
                  f"worker_processes {WORKERS}, SO_REUSEPORT listeners; proxies and wrk "
                  f"({WORKERS} threads) unpinned", "", *table(whole)]
    lines += ["", f"Medians of {args.rounds} alternating rounds (nginx, then meshnet, per round). "
              "Target: ratio >= 0.5 per core (issue 5, acceptance 4). CPU is the proxy's "
              "user+system time over the run (all its workers): 100% per worker means the "
              "proxy was the bottleneck; below that, the load side or other processes on the "
              "machine held it back, which is why requests per CPU-second are compared too."]
    return "\n".join(lines) + "\n"


def summary_lines(rows: list[tuple], whole: list[tuple]) -> list[dict]:
    """bench/run's lines (bench/summary.py), computed as in `render`."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import summary

    out = []
    for mode, rounds in rows:
        ng, me, ratio, per_cpu = figures(rounds)
        out.append(summary.line("ingress", f"requests/s, {mode}", f"{me['rps']:,.0f}",
                                f"{ng['rps']:,.0f} (nginx)", ratio, "≥ 0.5", ratio >= 0.5))
        out.append(summary.line("ingress", f"requests per CPU-second, {mode}", "—",
                                "— (nginx)", per_cpu))
        out.append(summary.line("ingress", f"p99, {mode}", f"{me['p99_us'] / 1000:.2f} ms",
                                f"{ng['p99_us'] / 1000:.2f} ms (nginx)",
                                ng["p99_us"] / me["p99_us"]))
    for mode, rounds in whole:
        ng, me, ratio, _ = figures(rounds)
        out.append(summary.line(
            "ingress", f"requests/s, whole machine ({WORKERS} workers each), {mode}",
            f"{me['rps']:,.0f}", f"{ng['rps']:,.0f} (nginx)", ratio))
    return out


def compare(modes, nginx: Nginx, ng_ports: tuple[int, int], meshnet: Meshnet, args,
            script: Path, *, cpu: str | None = LOAD_CPU, threads: int = 1) -> list[tuple]:
    """[(mode, [(nginx's figures, meshnet's) per round])]; rounds alternate the two."""
    rows = []
    for mode, scheme, headers in modes:
        port_ng = ng_ports[scheme == "https"]
        port_me = meshnet.https_port if scheme == "https" else meshnet.http_port
        rounds = []
        for i in range(args.rounds):  # alternated, so drifting load hits both alike
            ng = measure(f"{scheme}://{NGINX_IP}:{port_ng}/", headers, nginx.worker_pids,
                         args, script, warm_up=i == 0, cpu=cpu, threads=threads)
            me = measure(f"{scheme}://{MESHNET_IP}:{port_me}/", headers, meshnet.pids, args,
                         script, warm_up=i == 0, cpu=cpu, threads=threads)
            print(f"{mode}: nginx {ng['rps']:,.0f} req/s p99 {ng['p99_us'] / 1000:.2f} ms cpu "
                  f"{ng['cpu']:.0%}; meshnet {me['rps']:,.0f} req/s p99 "
                  f"{me['p99_us'] / 1000:.2f} ms cpu {me['cpu']:.0%}; ratio "
                  f"{me['rps'] / ng['rps']:.2f}", flush=True)
            rounds.append((ng, me))
        rows.append((mode, rounds))
        if args.profile:
            out = Path(args.profile)
            out.mkdir(parents=True, exist_ok=True)
            name = f"{mode.replace(' ', '_').replace(',', '')}{'-whole' if cpu is None else ''}"
            profile(meshnet.pids[0], f"{scheme}://{MESHNET_IP}:{port_me}/", headers,
                    args, script, out / f"{name}.txt")  # with --workers: worker 0
    return rows


def start_nginx_proxy(workdir: Path, backend_port: int, ports: tuple[int, int], args,
                      cpu: str | None, workers: int) -> Nginx:
    nginx = Nginx(workdir, PROXY_SERVER.format(
        backend=f"{BACKEND_IP}:{backend_port}", ip=NGINX_IP, http_port=ports[0],
        https_port=ports[1], host=HOST, dir=workdir,
        tls="" if args.nginx_debian_tls else INGRESS_NGINX_TLS,
        reuseport=" reuseport" if workers > 1 else ""), cpu, workers)
    wait_port(NGINX_IP, ports[0])
    return nginx


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2,
                   help="alternating nginx/meshnet measurements per mode; medians reported")
    p.add_argument("--profile", metavar="DIR", help="py-spy profiles of meshnet-ingress")
    p.add_argument("--modes", default="", help="comma-separated mode numbers (default all)")
    p.add_argument("--no-whole-machine", action="store_true",
                   help=f"skip the {WORKERS}-worker comparison")
    p.add_argument("--summary", help="also write this run's lines for bench/run to this file")
    p.add_argument("--nginx-debian-tls", action="store_true",
                   help="nginx on Debian's TLS defaults (TLS 1.2 at most, tickets) instead of "
                        "ingress-nginx's")
    args = p.parse_args()
    began = time.monotonic()
    ensure_packages()
    from meshnet.ingress.certs import generate_self_signed

    cert, key = generate_self_signed(HOST)
    modes = [MODES[int(i)] for i in args.modes.split(",")] if args.modes else MODES
    whole: list[tuple] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        tmp = Path(tmp)
        script = tmp / "report.lua"
        script.write_text(WRK_REPORT_LUA)
        backend_port = free_port(BACKEND_IP)
        ng_ports = (free_port(NGINX_IP), free_port(NGINX_IP))
        started = []
        try:
            backend = Nginx(tmp / "backend", BACKEND_SERVER.format(
                ip=BACKEND_IP, port=backend_port, body=BODY.replace("\n", "\\n")), LOAD_CPU)
            started.append(backend)
            wait_port(BACKEND_IP, backend_port)
            for name in ("proxy", "proxy-whole"):
                (tmp / name).mkdir()
                (tmp / name / "tls.crt").write_bytes(cert)
                (tmp / name / "tls.key").write_bytes(key)
            nginx = start_nginx_proxy(tmp / "proxy", backend_port, ng_ports, args, PROXY_CPU, 1)
            started.append(nginx)
            meshnet = Meshnet(tmp / "meshnet", backend_port, cert, key)
            started.append(meshnet)
            direct = measure(f"http://{BACKEND_IP}:{backend_port}/", [], [], args, script)
            print(f"backend alone: {direct['rps']:,.0f} req/s", flush=True)
            rows = compare(modes, nginx, ng_ports, meshnet, args, script)
            if not args.no_whole_machine:
                started.remove(nginx)
                nginx.stop()
                nginx = start_nginx_proxy(tmp / "proxy-whole", backend_port, ng_ports, args,
                                          None, WORKERS)
                started.append(nginx)
                meshnet.start_ingress(None, WORKERS)
                whole = compare([m for m in WHOLE_MACHINE_MODES if m in modes], nginx,
                                ng_ports, meshnet, args, script, cpu=None, threads=WORKERS)
        finally:
            for s in reversed(started):
                s.stop()
    report = render(rows, whole, args, direct)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"ingress-{time.strftime('%Y-%m-%d')}.md"
    path.write_text(report)
    print(report)
    print(f"written to {path} ({time.monotonic() - began:.0f} s)")
    if args.summary:
        import summary

        summary.write(args.summary, summary_lines(rows, whole))


if __name__ == "__main__":
    main()
