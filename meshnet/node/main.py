"""meshnet-agent: command line and start-up checks.

    meshnet-agent --kubeconfig admin.kubeconfig --node-name node-a [--pod-cidr 10.244.1.0/24]

The agent programs the network namespace it runs in. It refuses to run in the host's initial
network namespace unless --host-network says that is intended (a real node), so a mistyped
test command can never put a bridge and pod routes on the developer's machine.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import socket
import sys
from pathlib import Path

from meshnet.daemon import DaemonError, add_server_flag, run_daemon
from meshnet.node.netconfig import BRIDGE, DEFAULT_CLUSTER_DNS, DEFAULT_CLUSTER_DOMAIN

DEFAULT_STATE_DIR = "/var/lib/meshnet-agent"
DEFAULT_AGENT_PORT = 10250  # kubelet's


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshnet-agent", description="meshnet node agent: "
                                "registers the node and runs its pods in network namespaces")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                   help="kubeconfig for the API server (default $KUBECONFIG)")
    add_server_flag(p)
    p.add_argument("--node-name", default=socket.gethostname())
    p.add_argument("--node-ip", default="",
                   help="the node's InternalIP (default: first global IPv4 address not on "
                        f"{BRIDGE})")
    p.add_argument("--pod-cidr", default="",
                   help="podCIDR to use while the Node has no spec.podCIDR (the control "
                        "plane's nodeipam assigns one)")
    p.add_argument("--cluster-dns", default=DEFAULT_CLUSTER_DNS)
    p.add_argument("--cluster-domain", default=DEFAULT_CLUSTER_DOMAIN)
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                   help="IPAM state, pod volumes and container logs")
    p.add_argument("--agent-listen", default="",
                   help=f"HOST:PORT of the logs/exec API (default NODE_IP:{DEFAULT_AGENT_PORT})")
    p.add_argument("--status-address", default="127.0.0.1:10248",
                   help="HOST:PORT for /healthz, /ready, /metrics ('' to disable)")
    p.add_argument("--keep-pods", action="store_true",
                   help="on stop, leave pods running (their network and processes stay)")
    p.add_argument("--runtime", choices=("netns", "docker"), default="netns",
                   help="netns: containers are processes in the pod's namespaces; docker: "
                        "real containers through dockerd (--docker-host)")
    p.add_argument("--docker-host", default=os.environ.get("DOCKER_HOST",
                                                           "unix:///var/run/docker.sock"),
                   help="dockerd's API socket for --runtime docker (default $DOCKER_HOST or "
                        "unix:///var/run/docker.sock)")
    p.add_argument("--host-network", action="store_true",
                   help="allow running in the host's initial network namespace")
    p.add_argument("--log-level", default="info")
    return p


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise DaemonError(f"{what} {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def detect_node_ip() -> str:
    from meshnet.node.rtnl import Rtnl

    nl = Rtnl()
    try:
        names = dict(nl.links())
        for index, address, scope in nl.addresses():
            if scope == 0 and names.get(index) != BRIDGE:
                return address
    finally:
        nl.close()
    raise DaemonError("no global IPv4 address in this network namespace to use as the node's "
                      "InternalIP; pass --node-ip")


def in_initial_netns() -> bool:
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    async def serve(stop):
        from meshnet.client.aio import AsyncClient
        from meshnet.client.errors import ClientError
        from meshnet.node.agent import Agent

        if os.geteuid() != 0:
            raise DaemonError("the agent needs root (network namespaces, bridges, mounts)")
        if in_initial_netns() and not args.host_network:
            raise DaemonError("refusing to program the host's own network namespace; run the "
                              "agent inside a node namespace (ip netns exec NODE meshnet-agent "
                              "...) or pass --host-network on a dedicated node")
        if args.pod_cidr:
            try:
                ipaddress.ip_network(args.pod_cidr, strict=False)
            except ValueError as exc:
                raise DaemonError(f"--pod-cidr {args.pod_cidr}: {exc}") from None
        node_ip = args.node_ip or await asyncio.to_thread(detect_node_ip)  # pyroute2 is sync
        listen = _host_port(args.agent_listen or f"{node_ip}:{DEFAULT_AGENT_PORT}",
                            "--agent-listen")
        status = _host_port(args.status_address, "--status-address") \
            if args.status_address else None
        try:
            client = AsyncClient.from_kubeconfig(args.kubeconfig, server=args.server)
        except (ClientError, OSError, ValueError) as exc:
            raise DaemonError(f"kubeconfig {args.kubeconfig}: {exc}") from None
        runtime = None
        if args.runtime == "docker":
            from meshnet.node.docker_runtime import DockerRuntime

            runtime = DockerRuntime(args.docker_host, args.node_name)
            await runtime.connect()
        agent = Agent(client, node_name=args.node_name, host_ip=node_ip,
                      state_dir=Path(args.state_dir), listen=listen,
                      cluster_dns=args.cluster_dns, cluster_domain=args.cluster_domain,
                      pod_cidr_override=args.pod_cidr, keep_pods=args.keep_pods,
                      status_address=status, python=sys.executable, runtime=runtime)
        try:
            await agent.run(stop)
        except ClientError as exc:
            raise DaemonError(str(exc)) from None
        finally:
            await client.close()

    return run_daemon("meshnet-agent", serve, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
