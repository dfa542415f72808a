"""The pacer's rules under a fake clock: the sliding window, holding until a second after the answer, CUBIC."""

from __future__ import annotations

import itertools

import pytest

from waba_lookup.adaptive import CubicRate
from waba_lookup.errors import Throttled
from waba_lookup.pacing import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wait(self, _cond: object, timeout: float) -> None:
        # a real clock always moves on; a float sum may land a hair short of the instant waited for
        self.now += timeout + 1e-9


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def send(pacer: Pacer, clock: FakeClock, latency: float = 0.0, send_by: float = 1e9) -> float:
    """One paced call; returns the time it was sent."""
    with pacer.permit(send_by):
        sent = clock.now
        clock.now += latency
    return sent


def test_calls_are_spaced_evenly_over_the_second(clock: FakeClock) -> None:
    pacer = Pacer(4, clock, clock.wait)
    assert [send(pacer, clock) for _ in range(4)] == pytest.approx([1000.0, 1000.25, 1000.5, 1000.75])


def test_the_next_call_waits_until_a_second_after_the_first_answer(clock: FakeClock) -> None:
    pacer = Pacer(2, clock, clock.wait)
    send(pacer, clock, latency=0.3)  # answered at 1000.3
    send(pacer, clock, latency=0.1)  # sent 1000.3, answered at 1000.4
    assert send(pacer, clock) == pytest.approx(1001.3)


def test_a_slot_that_cannot_be_had_before_the_bound_raises_throttled_with_retry_after(clock: FakeClock) -> None:
    pacer = Pacer(1, clock, clock.wait)
    send(pacer, clock, latency=0.2)
    with pytest.raises(Throttled) as raised:
        send(pacer, clock, send_by=clock.now + 0.5)
    assert raised.value.code == "Throttling.Pacing"
    assert raised.value.retry_after >= 1.0
    assert clock.now == pytest.approx(1000.2)  # it did not wait in vain


def test_no_slot_is_given_once_the_send_bound_has_passed(clock: FakeClock) -> None:
    pacer = Pacer(5, clock, clock.wait)
    with pytest.raises(Throttled):
        send(pacer, clock, send_by=clock.now - 0.01)


def test_an_in_flight_call_holds_its_slot_until_answered(clock: FakeClock) -> None:
    pacer = Pacer(1, clock, clock.wait)
    with pacer.permit(1e9):
        clock.now += 5.0  # a slow answer
        with pytest.raises(Throttled), pacer.permit(clock.now + 0.9):  # a second after the (future) answer
            pass
    assert send(pacer, clock) == pytest.approx(1006.0)


def test_throttling_cuts_the_rate_by_beta_and_cubic_recovers_to_the_cap(clock: FakeClock) -> None:
    rate = CubicRate(10, clock)
    rate.throttled()
    assert rate.enabled and rate.rate == pytest.approx(7.0)
    rate.throttled()
    assert rate.rate == pytest.approx(4.9)
    clock.now += 0.5
    rate.succeeded()
    assert 4.9 * 0.7 < rate.rate < 7.0  # concave: back toward the last maximum
    clock.now += CubicRate.RECOVERY_SECONDS / 2
    rate.succeeded()
    assert 4.9 < rate.rate < 7.0  # still below the last maximum: recovery is slow on purpose
    clock.now += CubicRate.RECOVERY_SECONDS * 2
    rate.succeeded()
    assert rate.rate == 10  # capped at the static share


def test_after_a_throttle_the_bucket_spaces_calls_at_the_reduced_rate(clock: FakeClock) -> None:
    pacer = Pacer(10, clock, clock.wait)
    pacer.throttled()  # rate 7/s, empty bucket
    times = [send(pacer, clock) for _ in range(8)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(1 / 7, rel=1e-6)


def test_rate_never_drops_below_the_floor(clock: FakeClock) -> None:
    rate = CubicRate(2, clock)
    for _ in range(20):
        rate.throttled()
    assert rate.rate == CubicRate.MIN_RATE


def test_quiesce_waits_for_every_held_slot_to_expire(clock: FakeClock) -> None:
    pacer = Pacer(3, clock, clock.wait)
    send(pacer, clock, latency=0.2)
    send(pacer, clock, latency=0.5)  # sent at 1000.33 (spaced), answered 1000.83
    pacer.settle(wait_until=1e9)
    assert clock.now == pytest.approx(1000 + 1 / 3 + 0.5 + 1, abs=1e-6)


def test_quiesce_gives_up_at_its_bound(clock: FakeClock) -> None:
    pacer = Pacer(1, clock, clock.wait)
    send(pacer, clock, latency=0.1)
    pacer.settle(wait_until=1000.5)
    assert clock.now == pytest.approx(1000.5, abs=1e-6)


def test_after_a_throttle_the_window_holds_only_the_whole_calls_of_the_rate(clock: FakeClock) -> None:
    pacer = Pacer(2, clock, clock.wait)
    pacer.throttled()  # 2/s -> 1.4/s: one slot, not two
    first = send(pacer, clock, latency=0.01)
    second = send(pacer, clock, latency=0.01)
    assert second - first >= 1.01  # the one slot frees a second after the answer (plus any contention jitter)


def test_contended_slots_are_held_a_little_longer_and_uncontended_ones_are_not(clock: FakeClock) -> None:
    pacer = Pacer(1, clock, clock.wait)
    gaps = []
    for throttle in (False, True):
        if throttle:
            pacer.throttled()
        a = send(pacer, clock)
        b = send(pacer, clock)
        gaps.append(b - a)
    assert gaps[0] == pytest.approx(1.0, abs=1e-6)
    assert 1.0 <= gaps[1] <= 1.0 + CubicRate.CONTENDED_JITTER + 1 / CubicRate.MIN_RATE


def test_contention_mode_ends_after_a_whole_recovery(clock: FakeClock) -> None:
    rate = CubicRate(4, clock)
    rate.throttled()
    clock.now += CubicRate.RECOVERY_SECONDS * 3
    rate.succeeded()
    assert rate.rate == 4 and not rate.enabled
    assert rate.hold_jitter() == 0.0 and rate.window_cap() == 4
