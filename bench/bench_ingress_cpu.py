"""CPU per proxied request of meshnet-ingress and nginx (not a throughput benchmark).

    .venv/bin/python bench/bench_ingress_cpu.py [--seconds 3] [--modes 0,1,2,3] [--nginx]

Same setup as bench/bench_ingress.py (one backend, each proxy pinned to one CPU, wrk on the
other), but what it prints is each proxy's user+system CPU time divided by the requests it
served: a figure that other load on the machine barely moves, so it needs no machine lock and
is what a change to the per-request path is judged by.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingress as bi  # noqa: E402


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / bi.CLK_TCK, int(fields[12]) / bi.CLK_TCK


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--modes", default="0,1,2,3")
    p.add_argument("--nginx", action="store_true", help="nginx's figures too")
    p.add_argument("--profile", metavar="DIR", help="py-spy profiles (collapsed stacks) "
                   "of meshnet-ingress during each measurement")
    args = p.parse_args()
    bi.ensure_packages()
    from meshnet.ingress.certs import generate_self_signed

    cert, key = generate_self_signed(bi.HOST)
    with tempfile.TemporaryDirectory(prefix="bench-ingress-cpu-") as tmp:
        tmp = Path(tmp)
        script = tmp / "report.lua"
        script.write_text(bi.WRK_REPORT_LUA)
        started = []
        try:
            backend_port = bi.free_port(bi.BACKEND_IP)
            backend = bi.Nginx(tmp / "backend", bi.BACKEND_SERVER.format(
                ip=bi.BACKEND_IP, port=backend_port, body=bi.BODY.replace("\n", "\\n")),
                bi.LOAD_CPU)
            started.append(backend)
            bi.wait_port(bi.BACKEND_IP, backend_port)
            targets = []
            if args.nginx:
                ng_http, ng_https = bi.free_port(bi.NGINX_IP), bi.free_port(bi.NGINX_IP)
                (tmp / "proxy").mkdir()
                (tmp / "proxy" / "tls.crt").write_bytes(cert)
                (tmp / "proxy" / "tls.key").write_bytes(key)
                nginx = bi.Nginx(tmp / "proxy", bi.PROXY_SERVER.format(
                    backend=f"{bi.BACKEND_IP}:{backend_port}", ip=bi.NGINX_IP,
                    http_port=ng_http, https_port=ng_https, host=bi.HOST, dir=tmp / "proxy",
                    tls=bi.INGRESS_NGINX_TLS, reuseport=""), bi.PROXY_CPU)
                started.append(nginx)
                bi.wait_port(bi.NGINX_IP, ng_http)
                targets.append(("nginx", bi.NGINX_IP, ng_http, ng_https, nginx.worker_pids[0]))
            meshnet = bi.Meshnet(tmp / "meshnet", backend_port, cert, key)
            started.append(meshnet)
            targets.append(("meshnet", bi.MESHNET_IP, meshnet.http_port, meshnet.https_port,
                            meshnet.proc.pid))
            for i in args.modes.split(","):
                mode, scheme, headers = bi.MODES[int(i)]
                for name, ip, http, https, pid in targets:
                    port = http if scheme == "http" else https
                    url = f"{scheme}://{ip}:{port}/"
                    bi.wrk(url, headers, 1, args.connections, script)
                    spy = None
                    if args.profile and name == "meshnet":
                        Path(args.profile).mkdir(parents=True, exist_ok=True)
                        out = Path(args.profile) / f"{i}.txt"
                        spy = subprocess.Popen(
                            [str(bi.BIN / "py-spy"), "record", "-p", str(pid), "--nonblocking",
                             "-d", str(int(args.seconds)), "-r", "250", "-f", "raw",
                             "-o", str(out)], stdout=subprocess.DEVNULL)
                    u0, s0 = cpu_times(pid)
                    r = bi.wrk(url, headers, args.seconds, args.connections, script)
                    u1, s1 = cpu_times(pid)
                    cpu = u1 - u0 + s1 - s0
                    if spy is not None:
                        spy.wait(60)
                    print(f"{mode:34s} {name:8s} {r['rps']:9,.0f} req/s "
                          f"{cpu / r['requests'] * 1e6:6.1f} us CPU/request (user "
                          f"{(u1 - u0) / r['requests'] * 1e6:5.1f}, system "
                          f"{(s1 - s0) / r['requests'] * 1e6:5.1f}) "
                          f"errors {r['errors']}", flush=True)
        finally:
            for s in reversed(started):
                s.stop()


if __name__ == "__main__":
    main()
