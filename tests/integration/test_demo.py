"""`make demo` reads cleanly and its figures mean what they say (issue 13, finding 12): no JSON log line or Python
warning cuts through its tables, each progress bar ends on a line of its own, and each bulk refresh accounts for
every message it sent: cached plus dead-lettered is what was sent, in the bar's last line and in the summary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

BAR = re.compile(r"\[[#x.]+\] (\d+)/(\d+)")
DEMO_SECONDS = 300


def cell(lines: list[str], label: str) -> str:
    """The value column of the summary row `label`."""
    (row,) = [line for line in lines if line.startswith(label + "  ")]
    return row[len(label) :].strip()


def number(text: str) -> int:
    found = re.match(r"\d+", text)
    assert found, text
    return int(found[0])


def bulk_part(lines: list[str], start: str, end: str | None) -> list[str]:
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next((i for i, line in enumerate(lines) if end and line.startswith(end)), len(lines))
    return lines[first:last]


def sent(part: list[str]) -> int:
    """What the part put on the queue: the POST's `Queued` and the unprocessable messages sent beside it."""
    queued = next(
        json.loads(line.split("-> 202 ", 1)[1].split("  (")[0])["Queued"] for line in part if "-> 202 " in line
    )
    extra = next(number(line.split("+ ", 1)[1]) for line in part if line.lstrip().startswith("+ "))
    return int(queued) + extra


def check_accounting(part: list[str], cached_rows: tuple[str, str], sent_count: int) -> None:
    bars = [line for line in part if BAR.search(line)]
    assert len(bars) == 1, bars  # one line for the bar, its last state
    done, total = map(int, BAR.search(bars[0]).groups())  # type: ignore[union-attr]
    figures = re.search(r"(\d+) cached, (\d+) in the dead-letter queue", bars[0])
    assert figures, bars[0]
    cached, dead = map(int, figures.groups())
    assert total == sent_count and done == cached + dead == sent_count, bars[0]
    in_summary = sum(number(cell(part, row)) for row in cached_rows)
    assert in_summary == cached, part
    assert number(cell(part, "messages in the dead-letter queue")) == dead, part
    (timing,) = [line for line in part if line.startswith("time to the last answer")]
    assert "the POST to the last" in timing, timing


@pytest.mark.slow
def test_the_demo_reads_cleanly_and_its_figures_add_up() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CAMS_", "ALIBABA_CLOUD_", "CACHE_", "AWS_"))}
    environ.pop("POWERTOOLS_LOG_LEVEL", None)  # Powertools' default level then: INFO
    environ["PYTHONUNBUFFERED"] = "1"
    # the library's logger already exists when main() starts, as it does when the demo runs inside another program
    script = "import waba_lookup.observability\nfrom waba_local.dev.demo import main\nmain()\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environ,
        timeout=DEMO_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    lines = output.splitlines()
    assert not [line for line in lines if line.lstrip().startswith("{")], "JSON log lines in the demo's output"
    assert not re.search(r"\w*Warning\b|Traceback", output), output
    # piped, a bar is written once, in its last state, on a line of its own (a terminal sees it redrawn in place)
    assert "\r" not in output and not [line for line in lines if len(BAR.findall(line)) > 1], output
    for part in range(1, 6):
        assert any(line.startswith(f"== {part}. ") for line in lines), part
    aws = bulk_part(lines, "== 3. ", "== 4. ")
    check_accounting(aws, ("cache entries with a WABA", "cache entries with a 403-class answer"), sent(aws))
    fc = bulk_part(lines, "== 5. ", None)
    check_accounting(fc, ("OSS entries with a WABA", "OSS entries with a 403-class answer"), sent(fc))
    assert done.stderr.strip() == "", done.stderr
