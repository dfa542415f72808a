"""make bench's medians over runs: a run that never got back counts as the slowest, not as a missing run."""

from __future__ import annotations

from waba_local.bench.__main__ import median_run
from waba_local.bench.figures import RunFigures


def run(back: float | None) -> RunFigures:
    zeros = dict.fromkeys(("rejected", "completed", "backlog", "neighbour_calls", "store_failures"), 0)
    rates = {"steady_per_s": 9.0, "end_to_end_per_s": 9.0, "neighbour_kept_pct": 96.0, "seconds": 60.0}
    store = {"store_requests_per_call": 3.0, "store_ms_per_call": 20.0}
    extra = {"back_to_9_per_s_after_s": back}
    return RunFigures("leaves", "fc", calls=100, busiest_second=10, extra=extra, **zeros, **rates, **store)


def test_a_run_that_never_got_back_is_the_slowest_of_the_median() -> None:
    assert median_run([run(5.0), run(None), run(7.0)])["extra"]["back_to_9_per_s_after_s"] == 7.0
    assert median_run([run(None), run(None), run(3.0)])["extra"]["back_to_9_per_s_after_s"] is None
    assert median_run([run(4.0), run(6.0), run(5.0)])["extra"]["back_to_9_per_s_after_s"] == 5.0
