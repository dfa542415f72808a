"""The in-process crowd's FIFO figure: measured against the order tickets reached the store, the line's own order."""

from __future__ import annotations

from waba_local.bench.crowd import fifo


def served(*rows: tuple[int, float | None, int | None]) -> dict[str, object]:
    """Rows of (thread start order, when sent or None if refused, order its ticket reached the store)."""
    return {"served": [{"arrival": a, "sent": sent, "joined": joined, "wait": 0.0} for a, sent, joined in rows]}


def test_places_jumped_count_against_the_order_the_store_saw() -> None:
    # threads 0-3 started in order, but their tickets reached the store as 2, 0, 3, 1; served in exactly that order
    in_store_order = served((0, 1.1, 1), (1, 1.3, 3), (2, 1.0, 0), (3, 1.2, 2))
    assert fifo(in_store_order) == "0 places (store arrival order)"
    # the last to reach the store served first: it jumped three places
    jumped = served((0, 1.1, 0), (1, 1.2, 1), (2, 1.3, 2), (3, 1.0, 3))
    assert fifo(jumped) == "3 places (store arrival order)"


def test_a_refused_waiter_is_not_counted_as_jumped_over() -> None:
    assert fifo(served((0, 1.0, 0), (1, None, 1), (2, 1.1, 2))) == "0 places (store arrival order)"


def test_without_a_line_the_threads_start_order_is_the_arrival() -> None:
    assert fifo(served((0, 1.1, None), (1, 1.0, None))) == "1 place (thread start order)"
