"""Plain-text output for the demo and the benchmark: headings, tables, progress bars."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO


def heading(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 72 - len(text)) if len(text) < 72 else f"\n== {text}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width table, as text."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *map(line, cells[1:])])


def bar(done: int, total: int, failed: int = 0, note: str = "", width: int = 30) -> str:
    """`[###xx....] done/total note`: `#` for what succeeded, `x` for what failed (of `done`), `.` for the rest."""
    total = max(total, 1)
    filled = width * min(done, total) // total
    crossed = min(filled, -(-width * min(failed, done) // total))  # rounded up: one failure shows
    return f"  [{'#' * (filled - crossed)}{'x' * crossed}{'.' * (width - filled)}] {done}/{total} {note}".rstrip()


class Progress:
    """One progress bar: redrawn in place on a terminal; elsewhere (a pipe, a log file) only its last state is
    written, so a log reads one line per bar. `end` always writes that last state and a newline."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.stream, self.width = total, stream or sys.stdout, width
        self.live = self.stream.isatty()
        self._drawn = 0  # the width of the line on screen, to blank what a shorter redraw leaves

    def update(self, done: int, note: str = "", failed: int = 0) -> None:
        if self.live:
            self._draw(bar(done, self.total, failed, note, self.width), "")

    def end(self, done: int, note: str = "", failed: int = 0) -> None:
        self._draw(bar(done, self.total, failed, note, self.width), "\n")

    def _draw(self, text: str, end: str) -> None:
        if self.live and not end:  # a line that wraps cannot be redrawn with \r: cut it to the terminal's width
            text = text[: shutil.get_terminal_size().columns - 1]
        prefix = "\r" if self.live else ""
        padding = " " * max(0, self._drawn - len(text)) if self.live else ""
        self.stream.write(f"{prefix}{text}{padding}{end}")
        self.stream.flush()
        self._drawn = 0 if end else len(text)


class Tally:
    """A bulk refresh's progress, counted where its messages end, not from what the worker answered (a record it
    re-sent is reported done, yet is still to do): `count` gives the entries in the cache and the messages in the
    dead-letter queue, each shown for itself. It notes when the cache last grew: the last answer."""

    def __init__(self, total: int, started: float, count: Callable[[], tuple[int, int]]) -> None:
        self.total, self.started, self.count = total, started, count
        self.cached = self.dead = 0
        self.last_write = started
        self.bar = Progress(total, width=20)

    def update(self, note: str = "") -> None:
        """Count again, after a batch: a write seen now is dated now."""
        seen = time.monotonic()
        cached, self.dead = self.count()
        if cached > self.cached:
            self.cached, self.last_write = cached, seen
        figures = f"{self.cached} cached, {self.dead} in DLQ"  # short: a redrawn line must fit in 80 columns
        self.bar.update(self.cached + self.dead, figures + (f"; {note}" if note else ""), failed=self.dead)

    def end(self) -> None:
        """Count once more and end the bar with the figures as they are."""
        self.cached, self.dead = self.count()
        lost = self.total - self.cached - self.dead
        figures = f"{self.cached} cached, {self.dead} in the dead-letter queue"
        figures += f", {lost} neither cached nor dead-lettered" if lost > 0 else ""
        self.bar.end(self.cached + self.dead, figures, failed=self.dead)

    def to_last_answer(self, answered_at: Iterable[float]) -> float:
        """Seconds from the start (the POST) to the last answer: the last CAMS answer (`answered_at`, monotonic) or
        the last cache write seen."""
        return max([self.last_write, *answered_at]) - self.started


def progress(done: int, total: int, note: str = "", width: int = 30) -> None:
    """Redraw a one-line progress bar on stdout, blanking what a longer line before it left; the caller ends the
    line (a newline) once the bar is finished."""
    text = bar(done, total, note=note, width=width)
    sys.stdout.write(f"\r{text}{' ' * max(0, _last_width[0] - len(text))}")
    sys.stdout.flush()
    _last_width[0] = len(text)


_last_width = [0]
