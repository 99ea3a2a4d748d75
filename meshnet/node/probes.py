"""Readiness and liveness probes: the result tracker (pure) and the three probe actions.

`ProbeTracker` applies kubelet's thresholds: the result flips to failure after
`failureThreshold` consecutive failures and back to success after `successThreshold`
consecutive successes. A readiness probe starts as failure (the pod is not Ready until the
first success), a liveness probe as success (nothing is killed before it has failed).

Actions, run from the node namespace: `httpGet` and `tcpSocket` connect to the pod IP over the
bridge (as kubelet does from the host), `httpGet` succeeds on a 2xx/3xx status; `exec` runs
the command inside the container and succeeds on exit code 0.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

DEFAULT_PERIOD_S = 10
DEFAULT_TIMEOUT_S = 1
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_SUCCESS_THRESHOLD = 1


@dataclass(frozen=True)
class ProbeSpec:
    kind: str  # httpGet | tcpSocket | exec
    port: int = 0
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay_s: float = 0
    period_s: float = DEFAULT_PERIOD_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD


def parse_probe(probe: dict | None, container: dict) -> ProbeSpec | None:
    """The probe of a container spec, named ports resolved; None when there is none."""
    if not probe:
        return None
    common = dict(initial_delay_s=probe.get("initialDelaySeconds", 0),
                  period_s=probe.get("periodSeconds", DEFAULT_PERIOD_S),
                  timeout_s=probe.get("timeoutSeconds", DEFAULT_TIMEOUT_S),
                  failure_threshold=probe.get("failureThreshold", DEFAULT_FAILURE_THRESHOLD),
                  success_threshold=probe.get("successThreshold", DEFAULT_SUCCESS_THRESHOLD))
    if "httpGet" in probe:
        h = probe["httpGet"] or {}
        return ProbeSpec("httpGet", _port(h.get("port"), container), h.get("path") or "/",
                         h.get("scheme", "HTTP"),
                         tuple((x.get("name", ""), x.get("value", ""))
                               for x in h.get("httpHeaders") or []), **common)
    if "tcpSocket" in probe:
        return ProbeSpec("tcpSocket", _port((probe["tcpSocket"] or {}).get("port"), container),
                         **common)
    if "exec" in probe:
        return ProbeSpec("exec", command=tuple((probe["exec"] or {}).get("command") or ()),
                         **common)
    return None


def _port(port, container: dict) -> int:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p.get("containerPort", 0))
    return 0


class ProbeTracker:
    def __init__(self, spec: ProbeSpec, initial: bool):
        self.spec = spec
        self.result = initial
        self._successes = 0
        self._failures = 0

    def __repr__(self) -> str:
        return (f"<ProbeTracker {self.spec.kind} {'success' if self.result else 'failure'} "
                f"+{self._successes}/-{self._failures}>")

    def observe(self, ok: bool) -> bool:
        """Record one probe outcome; True when the result flipped."""
        if ok:
            self._successes, self._failures = self._successes + 1, 0
            if not self.result and self._successes >= max(1, self.spec.success_threshold):
                self.result = True
                return True
        else:
            self._failures, self._successes = self._failures + 1, 0
            if self.result and self._failures >= max(1, self.spec.failure_threshold):
                self.result = False
                return True
        return False


async def http_get(ip: str, spec: ProbeSpec) -> bool:
    if spec.scheme.upper() == "HTTPS":
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # kubelet skips verification
    else:
        ctx = None
    reader, writer = await asyncio.open_connection(ip, spec.port, ssl=ctx)
    try:
        extra = "".join(f"{k}: {v}\r\n" for k, v in spec.headers)
        writer.write(f"GET {spec.path} HTTP/1.1\r\nHost: {ip}:{spec.port}\r\n"
                     f"User-Agent: kube-probe/1.30\r\nConnection: close\r\n{extra}\r\n".encode())
        await writer.drain()
        line = await reader.readline()
        parts = line.split()
        return len(parts) >= 2 and 200 <= int(parts[1]) < 400
    finally:
        writer.close()


async def tcp_socket(ip: str, spec: ProbeSpec) -> bool:
    _reader, writer = await asyncio.open_connection(ip, spec.port)
    writer.close()
    return True


async def run_probe(spec: ProbeSpec, ip: str,
                    exec_fn: Callable[[list[str], float], Awaitable[int]]) -> bool:
    """One probe attempt; any error or timeout is a failure."""
    try:
        if spec.kind == "httpGet":
            return await asyncio.wait_for(http_get(ip, spec), spec.timeout_s)
        if spec.kind == "tcpSocket":
            return await asyncio.wait_for(tcp_socket(ip, spec), spec.timeout_s)
        if spec.kind == "exec":
            return await exec_fn(list(spec.command), spec.timeout_s) == 0
    except (OSError, asyncio.TimeoutError, ValueError, ProcessLookupError):
        return False
    return False
