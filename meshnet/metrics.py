"""Prometheus metrics and the health endpoints every meshnet daemon serves.

A deliberately small subset of the Prometheus text exposition format 0.0.4: counters, gauges
and histograms with labels. Updating a metric is a dict operation on the hot path (no locks:
each daemon is one asyncio thread). `serve_status()` runs `/healthz`, `/ready` (`/readyz`) and
`/metrics` on a separate loopback port, as kube-proxy and CoreDNS do.
"""

from __future__ import annotations

import bisect
import inspect
import math
from typing import Callable, Iterable

from aiohttp import web

# Prometheus' default buckets, in seconds.
DEFAULT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels_text(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()):
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()):
        super().__init__(name, help_text, labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> list[str]:
        return self.header() + [f"{self.name}{_labels_text(self.label_names, k)} {_number(v)}"
                                for k, v in sorted(self.values.items())]


class Gauge(Counter):
    kind = "gauge"

    def set(self, *labels: str, value: float) -> None:
        self.values[labels] = value


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = (),
                 buckets: tuple[float, ...] = DEFAULT_BUCKETS_S):
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self.series: dict[tuple[str, ...], list] = {}  # labels -> [counts..., sum, count]

    def observe(self, value: float, *labels: str) -> None:
        row = self.series.get(labels) or self.row(*labels)
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            row[index] += 1
        row[-2] += value
        row[-1] += 1

    def row(self, *labels: str) -> list:
        """The series of `labels`, for a caller that updates it in place as observe() does:
        [count per bucket..., sum, count] (a value above the last bucket only in the last
        two)."""
        row = self.series.get(labels)
        if row is None:
            row = self.series[labels] = [0] * len(self.buckets) + [0.0, 0]
        return row

    def count(self, *labels: str) -> int:
        row = self.series.get(labels)
        return row[-1] if row else 0

    def render(self) -> list[str]:
        lines = self.header()
        for labels, row in sorted(self.series.items()):
            cumulative = 0
            for bound, n in zip(self.buckets, row):
                cumulative += n
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels_text(self.label_names, labels, le)} "
                             f"{cumulative}")
            inf = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{_labels_text(self.label_names, labels, inf)} "
                         f"{row[-1]}")
            lines.append(f"{self.name}_sum{_labels_text(self.label_names, labels)} "
                         f"{_number(row[-2])}")
            lines.append(f"{self.name}_count{_labels_text(self.label_names, labels)} {row[-1]}")
        return lines


class Registry:
    """The metrics of one daemon."""

    def __init__(self):
        self.metrics: list[_Metric] = []

    def add(self, metric):
        self.metrics.append(metric)
        return metric

    def counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
        return self.add(Counter(name, help_text, labels))

    def gauge(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Gauge:
        return self.add(Gauge(name, help_text, labels))

    def histogram(self, name: str, help_text: str, labels: Iterable[str] = (),
                  buckets: tuple[float, ...] = DEFAULT_BUCKETS_S) -> Histogram:
        return self.add(Histogram(name, help_text, labels, buckets))

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


async def _answer(check: Callable[[], object]):
    result = check()
    return await result if inspect.isawaitable(result) else result


async def serve_status(host: str, port: int, metrics: Registry | None, *,
                       healthy: Callable[[], object] = lambda: True,
                       ready: Callable[[], object] = lambda: True,
                       render: Callable[[], object] | None = None) -> web.AppRunner:
    """Start `/healthz`, `/ready`, `/readyz` and `/metrics`; returns the runner to clean up.
    `healthy`, `ready` and `render` (the metrics text; default: `metrics.render`) may be
    plain or async functions."""
    render = render or metrics.render

    async def health(_request):
        ok = await _answer(healthy)
        return web.Response(status=200 if ok else 503, text="ok" if ok else "unhealthy")

    async def readiness(_request):
        ok = await _answer(ready)
        return web.Response(status=200 if ok else 503, text="ok" if ok else "not ready")

    async def exposition(_request):
        return web.Response(text=await _answer(render),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_get("/ready", readiness)
    app.router.add_get("/readyz", readiness)
    app.router.add_get("/metrics", exposition)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
