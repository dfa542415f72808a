"""Plain-text output for the demo and the benchmark: headings, tables, a progress bar."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def heading(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 72 - len(text)))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width table, as text."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *map(line, cells[1:])])


def progress(done: int, total: int, note: str = "", width: int = 30) -> None:
    """Redraw a one-line progress bar on stdout."""
    filled = width * min(done, total) // max(total, 1)
    sys.stdout.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {note}   ")
    if done >= total:
        sys.stdout.write("\n")
    sys.stdout.flush()
