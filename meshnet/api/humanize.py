"""Durations and timestamps the way kubectl prints them.

`human_duration` follows apimachinery's `duration.HumanDuration` (the AGE column of every
`kubectl get`): about two significant figures, coarser as the duration grows —
`59s`, `119s`, `3m2s`, `10m`, `5h3m`, `10h`, `2d5h`, `45d`, `3y45d`, `9y`.
`short_human_duration` is `duration.ShortHumanDuration` (one unit: `5m`, `3h`, `2d`).

Both take seconds as a float and truncate like Go's integer conversion. A negative duration
of up to two seconds reads `0s` (clock skew between machines); more negative is `<invalid>`.
Timestamps are RFC 3339 strings as they appear in objects (`2024-05-01T10:00:00Z`, or with
microseconds for MicroTime fields); `age()` answers `<unknown>` for a missing one, as kubectl's
printers do.
"""

from __future__ import annotations

from datetime import datetime, timezone

_MINUTE_S = 60
_HOUR_S = 60 * _MINUTE_S
_DAY_S = 24 * _HOUR_S

UNKNOWN = "<unknown>"
INVALID = "<invalid>"


def human_duration(seconds: float) -> str:
    """apimachinery `duration.HumanDuration`, given the duration in seconds."""
    whole = int(seconds)  # Go's int(d.Seconds()) truncates toward zero
    if whole < -1:
        return INVALID
    if whole < 0:
        return "0s"
    if whole < 2 * _MINUTE_S:
        return f"{whole}s"
    minutes = whole // _MINUTE_S
    if minutes < 10:
        secs = whole % _MINUTE_S
        return f"{minutes}m" if secs == 0 else f"{minutes}m{secs}s"
    if minutes < 3 * 60:
        return f"{minutes}m"
    hours = whole // _HOUR_S
    if hours < 8:
        mins = minutes % 60
        return f"{hours}h" if mins == 0 else f"{hours}h{mins}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def short_human_duration(seconds: float) -> str:
    """apimachinery `duration.ShortHumanDuration`: a single unit."""
    whole = int(seconds)
    if whole < -1:
        return INVALID
    if whole < 0:
        return "0s"
    if whole < _MINUTE_S:
        return f"{whole}s"
    if whole < _HOUR_S:
        return f"{whole // _MINUTE_S}m"
    hours = whole // _HOUR_S
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def parse_timestamp(value: str | None) -> float | None:
    """Seconds since the epoch for an RFC 3339 timestamp; None when absent or unparsable.

    Unparsable is treated like absent (kubectl prints `<unknown>`) rather than raised: a
    printer must not fail a whole `kubectl get` because one object carries an odd timestamp.
    """
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def format_timestamp(epoch_s: float) -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time serializes."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(timestamp: str | None, now: float) -> str:
    """kubectl's `translateTimestampSince`: the AGE of a creationTimestamp at `now`."""
    moment = parse_timestamp(timestamp)
    if moment is None:
        return UNKNOWN
    return human_duration(now - moment)
