"""The lines each benchmark contributes to the combined table that `bench/run` writes.

A bench script given `--summary FILE` writes its lines there as JSON: a list of
{"area", "measure", "meshnet", "reference", "ratio", "target", "met"}, figures already
formatted as text. `ratio` is oriented so that > 1 means meshnet is better (None when there is
no reference); `met` is True/False when the line has a target, None otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path


def line(area: str, measure: str, meshnet: str, reference: str = "—",
         ratio: float | None = None, target: str = "—", met: bool | None = None) -> dict:
    return {"area": area, "measure": measure, "meshnet": meshnet, "reference": reference,
            "ratio": None if ratio is None else round(ratio, 2), "target": target, "met": met}


def write(path: str | None, lines: list[dict]) -> None:
    if path:
        Path(path).write_text(json.dumps(lines, indent=1) + "\n")
