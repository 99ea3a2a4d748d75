"""Per-Ingress annotations: parse_route_options(ingress) -> (RouteOptions, problems).

meshnet's own annotations live under `meshnet.io/`; the ingress-nginx spelling
(`nginx.ingress.kubernetes.io/<same name>`) is honoured too so manifests written for
ingress-nginx keep working, the meshnet one winning when both are set. Values use nginx's
units: timeouts in seconds ("30", "30s", "1m"), sizes as "8m", "1g", "512k", "0" unlimited.
A bad value is reported (an Event) and the default is used; it never fails the Ingress.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshnet.ingress.match import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, \
    DEFAULT_SEND_TIMEOUT_S
from meshnet.ingress.views import IngressView

MESHNET_PREFIX = "meshnet.io/"
NGINX_PREFIX = "nginx.ingress.kubernetes.io/"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@dataclass(frozen=True)
class RouteOptions:
    ssl_redirect: bool = True
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S
    max_body_bytes: int = 0  # 0: unlimited (ingress-nginx defaults to 1m; see docs/ingress.md)


def parse_duration_s(text: str) -> float:
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a positive duration such as 30, 30s or 1m")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_size_bytes(text: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size such as 0, 512k, 8m or 1g")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


_FIELDS = (
    # (annotation name, RouteOptions field, parser)
    ("ssl-redirect", "ssl_redirect", parse_bool),
    ("proxy-connect-timeout", "connect_timeout_s", parse_duration_s),
    ("proxy-read-timeout", "read_timeout_s", parse_duration_s),
    ("proxy-send-timeout", "send_timeout_s", parse_duration_s),
    ("proxy-body-size", "max_body_bytes", parse_size_bytes),
)


def parse_route_options(ing: IngressView) -> tuple[RouteOptions, tuple[str, ...]]:
    values: dict = {}
    problems: list[str] = []
    for name, attr, parse in _FIELDS:
        for prefix in (MESHNET_PREFIX, NGINX_PREFIX):
            raw = ing.annotation(prefix + name)
            if raw is None:
                continue
            try:
                values[attr] = parse(raw)
            except ValueError as exc:
                problems.append(f"annotation {prefix}{name}: {exc}; using the default")
                continue
            break  # meshnet.io/ wins over the nginx spelling
    return RouteOptions(**values), tuple(problems)
