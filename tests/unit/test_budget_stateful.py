"""The shared budget's guarantee under Hypothesis: no sliding second of CAMS arrivals holds more than the budget.

K instances share one in-memory store under a fake clock, and wait in its line. Each reads the wall clock with its own offset (within
the skew margin), and each call arrives at CAMS some time between its send and its answer. Rules interleave
reads and refreshes, answers, answers never written back (an instance killed mid-call and replaced), store
outages and recoveries, instances killed while they wait in line, CAMS throttles and the passing of time.

An instance whose store fails gets no permit (BudgetUnavailable) and so sends nothing: the model checks that the
log stays the whole truth through outages, whole or partial (one_instance_loses_the_store).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, event, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from waba_lookup.budget import shared
from waba_lookup.budget.log import CLOCK_SKEW_MARGIN, LogRecord, Policy, Take
from waba_lookup.budget.shared import LogPermit, SharedBudget
from waba_lookup.budget.store import (
    Column,
    Expect,
    Expects,
    LogStore,
    MemoryLogStore,
    Names,
    Put,
    StoreUnavailable,
    take_write,
)
from waba_lookup.errors import Throttled

# Small numbers find counterexamples sooner; the rules do not depend on them: at most WORKERS worker instances and
# HTTP_INSTANCES HTTP ones, up to CALLS_PER_INSTANCE calls at a time each.
BUDGET, RESERVE, LONGEST = 4, 1, 1.5
WORKERS, HTTP_INSTANCES = 3, 2
CALLS_PER_INSTANCE = 2  # more than Lambda gives an instance: a superset of what can happen


@dataclass
class World:
    now: float = 1_000.0
    arrivals: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds) + 1e-9


@dataclass
class Call:
    permit: LogPermit
    arrives: float


@dataclass
class Instance:
    budget: SharedBudget
    interactive: bool
    calls: list[Call] = field(default_factory=list)


class Killed(Exception):
    pass


class Switchable:
    """A store that can be taken down and brought back: requests fail like an outage while it is down."""

    def __init__(self, store: LogStore) -> None:
        self.inner, self.down = store, False
        self.answer_seconds = store.answer_seconds

    def load(self) -> LogRecord:
        self._up()
        return self.inner.load()

    def update(self, put: Put, delete: Names = (), expect: Expects = (), returning: bool = False) -> LogRecord | None:
        self._up()
        return self.inner.update(put, delete, expect, returning)

    def _up(self) -> None:
        if self.down:
            raise StoreUnavailable("down")


class SharedBudgetMachine(RuleBasedStateMachine):
    """The deployment's instances over one store. Subclasses put the record in a real store (integration tests)."""

    def new_store(self) -> LogStore:
        return MemoryLogStore()

    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.store = Switchable(self.new_store())
        self.instances: list[Instance] = []
        self.ids = iter(range(1_000_000))

    def _new_instance(self, offset: float, interactive: bool) -> Instance:
        world = self.world
        shared = SharedBudget(
            self.store,  # replaced by a failing one for an instance cut off
            Policy(BUDGET, RESERVE, LONGEST),
            wall=lambda: world.now + offset,
            clock=lambda: world.now,
            sleep=world.sleep,
            new_id=lambda: f"id{next(self.ids)}",
        )
        return Instance(shared, interactive)

    def _count(self, interactive: bool) -> int:
        return sum(i.interactive == interactive for i in self.instances)

    def _idle(self) -> list[Instance]:
        return [i for i in self.instances if len(i.calls) < CALLS_PER_INSTANCE]

    def _busy(self) -> list[Instance]:
        return [i for i in self.instances if i.calls]

    @rule(offset=st.floats(-CLOCK_SKEW_MARGIN / 2, CLOCK_SKEW_MARGIN / 2))
    @precondition(lambda self: self._count(False) < WORKERS)
    def start_worker(self, offset: float) -> None:
        self.instances.append(self._new_instance(offset, interactive=False))

    @rule(offset=st.floats(-CLOCK_SKEW_MARGIN / 2, CLOCK_SKEW_MARGIN / 2))
    @precondition(lambda self: self._count(True) < HTTP_INSTANCES)
    def start_http_instance(self, offset: float) -> None:
        self.instances.append(self._new_instance(offset, interactive=True))

    @rule(data=st.data(), wait=st.floats(0, 3), delay=st.floats(0, 1))
    @precondition(lambda self: self._idle())
    def call(self, data: st.DataObject, wait: float, delay: float, instance: Instance | None = None) -> None:
        """An attempt: take a permit (waiting up to `wait`), then send; it arrives `delay` of the call later."""
        instance = instance or data.draw(st.sampled_from(self._idle()))
        try:
            permit = instance.budget.take(self.world.now + wait, instance.interactive)
        except Throttled as error:  # BudgetUnavailable among them: no call
            event(f"no permit: {error.code}")
            return
        event("permit")
        instance.calls.append(Call(permit, self.world.now + delay * LONGEST))
        bisect.insort(self.world.arrivals, instance.calls[-1].arrives)

    @rule(data=st.data(), wait=st.floats(0, 3))
    @precondition(lambda self: self._idle())
    def everyone_calls(self, data: st.DataObject, wait: float) -> None:
        """A burst: every instance with room attempts a call, so the log fills and races."""
        for instance in self._idle():
            self.call(data, wait, data.draw(st.floats(0, 1)), instance)

    @rule(data=st.data())
    @precondition(lambda self: self._busy())
    def everyone_answers(self, data: st.DataObject) -> None:
        for instance in self._busy():
            self.answer(data, True, instance)

    @rule(data=st.data(), written_back=st.booleans())
    @precondition(lambda self: self._busy())
    def answer(self, data: st.DataObject, written_back: bool, instance: Instance | None = None) -> None:
        """CAMS answers a call (no earlier than it arrived); or the instance is killed and replaced before it
        can write its answers back."""
        instance = instance or data.draw(st.sampled_from(self._busy()))
        call = instance.calls[0]
        self.world.now = max(self.world.now, call.arrives)
        if written_back:
            instance.budget.give_back(call.permit)
            instance.calls.pop(0)
        else:
            self.instances.remove(instance)

    @rule(data=st.data(), wait=st.floats(0.5, 3))
    @precondition(lambda self: self._idle())
    def dies_in_line(self, data: st.DataObject, wait: float) -> None:
        """An instance killed while it waits in line: its ticket stays behind until it lapses."""
        instance = data.draw(st.sampled_from(self._idle()))

        def killed(seconds: float) -> None:
            raise Killed

        instance.budget.sleep = killed
        try:
            instance.budget.take(self.world.now + wait, instance.interactive)
        except (Killed, Throttled):
            event("died in line")
        self.instances.remove(instance)
        if instance.calls:  # its calls in flight are never written back
            event("killed with calls in flight")

    @rule(data=st.data())
    @precondition(lambda self: any(not i.calls for i in self.instances))
    def end_invocation_and_replace(self, data: st.DataObject) -> None:
        instance = data.draw(st.sampled_from([i for i in self.instances if not i.calls]))
        instance.budget.settle(self.world.now + 10)
        self.instances.remove(instance)

    @rule(data=st.data())
    @precondition(lambda self: self.instances)
    def cams_throttles(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self.instances)).budget.throttled()

    @rule(data=st.data())
    @precondition(lambda self: self.instances)
    def cams_answers(self, data: st.DataObject) -> None:
        """An instance's last call answered: a probe's top slot passes it, raising the level."""
        data.draw(st.sampled_from(self.instances)).budget.succeeded()

    @rule(seconds=st.floats(0, 0.5))
    def time_passes(self, seconds: float) -> None:
        self.world.sleep(seconds)

    @rule()
    def store_goes_down(self) -> None:
        self.store.down = True

    @rule()
    @precondition(lambda self: self.store.down)
    def store_comes_back(self) -> None:
        self.store.down = False

    @rule(data=st.data())
    @precondition(lambda self: self.instances)
    def one_instance_loses_the_store(self, data: st.DataObject) -> None:
        """A partial outage: this instance's requests fail, the others' do not."""
        instance = data.draw(st.sampled_from(self.instances))
        cut_off = Switchable(self.store)
        cut_off.down = True
        instance.budget.store = cut_off

    @rule(data=st.data())
    @precondition(lambda self: any(isinstance(i.budget.store.inner, Switchable) for i in self.instances))
    def it_gets_the_store_back(self, data: st.DataObject) -> None:
        cut = [i for i in self.instances if isinstance(i.budget.store.inner, Switchable)]
        data.draw(st.sampled_from(cut)).budget.store = self.store

    def busiest_second(self) -> int:
        arrivals = self.world.arrivals
        return max((bisect.bisect_left(arrivals, a + 1.0) - i for i, a in enumerate(arrivals)), default=0)

    @invariant()
    def no_second_holds_more_than_the_budget(self) -> None:
        busiest = self.busiest_second()
        assert busiest <= BUDGET, f"{busiest} arrivals in one second"

    def teardown(self) -> None:
        # steer the search towards full seconds, where a broken rule shows
        busiest = self.busiest_second()
        event(f"busiest second {busiest}")
        target(float(busiest), label="busiest second")


SETTINGS = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_no_sliding_second_ever_holds_more_calls_than_the_budget() -> None:
    run_state_machine_as_test(SharedBudgetMachine, settings=SETTINGS)


def _trusting(take: Take) -> tuple[dict[str, Column], list[str], list[Expect]]:
    """A broken write: the slot is taken on the writer's copy alone, with no condition for the store to check."""
    put, leaves, _ = take_write(take)
    return put, leaves, []


def test_the_property_catches_takes_that_trust_a_stale_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared, "take_write", _trusting)
    quick = settings(SETTINGS, phases=[Phase.generate], derandomize=True, max_examples=300)
    with pytest.raises(AssertionError, match="arrivals in one second"):
        run_state_machine_as_test(SharedBudgetMachine, settings=quick)
