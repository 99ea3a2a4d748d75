"""Elastic tabstops exactly as Go's text/tabwriter lays them out.

kubectl prints every table (`get`, `describe`, `config get-contexts`) through Go's tabwriter, and
people read and script against that layout, so we reproduce its algorithm rather than "pad each
column to its widest cell": a column is aligned only over a *block* of consecutive lines that
all have a cell in it, and a line with fewer cells ends the block. That is why kubectl's
`describe ingress` rules table shifts its Path column below the host line, and why a line with
no tab at all ("Containers:") restarts alignment beneath it.

Cells are tab-terminated; the text after a line's last tab is not part of any column and is
never padded. Width of a column = max(minwidth, widest cell + padding).

`remember` (liggitt/tabwriter's RememberWidths, which kubectl `get` uses) keeps the widest
width seen per column across calls, so rows printed later by `get --watch` line up with the
table printed first.
"""

from __future__ import annotations

# kubectl's settings (cli-runtime printers.GetNewTabWriter and describe.tabbedString).
TABLE = dict(minwidth=6, padding=3)
DESCRIBE = dict(minwidth=0, padding=2)


def format_tabbed(text: str, *, minwidth: int = 0, padding: int = 1,
                  remember: list[int] | None = None) -> str:
    """Lay out tab-separated text; `remember` (mutated) carries widths across calls."""
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, cell in enumerate(cells):
                parts.append(cell)
                if j < len(widths) and j < len(cells) - 1:
                    parts.append(" " * (widths[j] - len(cell)))
            out.append("".join(parts))
            if i + 1 != len(lines):
                out.append("\n")

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1:
                cells = lines[this]
                if column >= len(cells) - 1:
                    break
                width = max(width, len(cells[column]) + padding)
                this += 1
            if remember is not None:
                if column < len(remember):
                    width = max(width, remember[column])
                    remember[column] = width
                else:
                    remember.append(width)
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
            # Go's loop increments `this` here; the line it skips has no cell in this column.
            this += 1
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "".join(out)


def table_text(rows: list[list[str]]) -> str:
    """Rows of cells -> tab-separated text ending in a newline (cells must hold no tabs)."""
    return "".join("\t".join(_clean(c) for c in row) + "\n" for row in rows)


def _clean(cell: str) -> str:
    # A tab or newline inside a cell would break the layout; kubectl truncates at the first
    # line break and appends "..." (tableprinter.go cellBreakChars).
    cell = str(cell)
    for i, ch in enumerate(cell):
        if ch in "\n\r\f":
            return cell[:i].replace("\t", " ") + "..."
    return cell.replace("\t", " ")


def format_table(rows: list[list[str]], remember: list[int] | None = None) -> str:
    return format_tabbed(table_text(rows), remember=remember, **TABLE)
