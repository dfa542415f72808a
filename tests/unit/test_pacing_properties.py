"""Property: whatever the latencies, throttles and instance counts, CAMS never sees more than the budget in any
sliding second, wherever between send and answer each call arrives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from waba_lookup.pacing import Pacer


class InstanceClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def wait(self, _cond: object, timeout: float) -> None:
        self.now += timeout + 1e-9


def run_instance(share: int, start: float, calls: list[tuple[float, float, bool]]) -> list[tuple[float, float]]:
    """One Lambda instance making calls one after another; returns each call's (send, answer) interval."""
    clock = InstanceClock(start)
    pacer = Pacer(share, clock, clock.wait)
    intervals = []
    for latency, think, throttled in calls:
        clock.now += think
        with pacer.permit(send_by=float("inf")):
            sent = clock.now
            clock.now += latency
        intervals.append((sent, clock.now))
        pacer.throttled() if throttled else pacer.succeeded()
    return intervals


def most_possible_arrivals_in_a_second(intervals: list[tuple[float, float]]) -> int:
    """The most calls whose arrival, anywhere in [send, answer], could fall in one window [t, t + 1)."""
    # the count for [t, t+1) only grows as t moves right until t passes some answer, so answers are the candidates
    return max(sum(1 for s, e in intervals if s < t + 1 and e >= t) for _, t in intervals)


calls = st.lists(
    st.tuples(
        st.floats(0.0005, 1.5),  # latency
        st.one_of(st.just(0.0), st.floats(0.0, 0.7)),  # time between calls
        st.booleans(),  # throttled by CAMS
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    budget=st.integers(1, 10),
    data=st.data(),
)
def test_no_sliding_second_ever_holds_more_than_the_budget(budget: int, data: st.DataObject) -> None:
    instances = data.draw(st.integers(1, budget), label="instances")
    share = budget // instances
    intervals = []
    for _ in range(instances):
        start = data.draw(st.floats(0, 2), label="start")
        intervals += run_instance(share, start, data.draw(calls, label="calls"))
    assert most_possible_arrivals_in_a_second(intervals) <= budget


def test_the_window_check_itself_counts_overlaps() -> None:
    # three calls whose [send, answer] intervals all touch [0.5, 1.5): three could arrive in one second
    assert most_possible_arrivals_in_a_second([(0.0, 0.6), (1.0, 1.1), (1.4, 2.0)]) == 3
    assert most_possible_arrivals_in_a_second([(0.0, 0.1), (1.2, 1.3)]) == 1
