"""What Function Compute's SMQ trigger (EventBridge, event-streaming) does, locally: receive messages from the queue
until the batch is full or its window ends, push them to the worker as one JSON array of CloudEvents, and delete
them once the invocation succeeded. A failed invocation is retried (the trigger's retry strategy); after the last
retry its events go to the dead-letter queue (errorsTolerance ALL), so the queue moves on.

The batch size, window and retries come from s.yaml (waba_local.build.s_yaml.queue_trigger) when given.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from waba_local.dev.fc_local import ACCOUNT_ID, REGION, FunctionMeta, LocalFcContext
from waba_local.dev.poller import DeliveryStats

Handler = Callable[[bytes, Any], Any]
SMQ_BATCH = 16  # SMQ's most messages in one batch call


@dataclass
class TriggerStats(DeliveryStats):
    failed_invocations: int = 0
    dead_lettered_events: int = 0
    late_deletes: int = 0  # batches whose receipt handles had expired (the invocation outlasted the visibility)
    outcomes: dict[str, int] = field(default_factory=dict)  # summed from the worker's answers


def cloud_event(queue: str, message: Any) -> dict[str, Any]:
    """The CloudEvent the trigger makes of one SMQ message (IsBase64Decode false: the body as it was sent)."""
    return {
        "id": str(uuid.uuid4()),
        "source": f"smq-{queue}",
        "specversion": "1.0",
        "type": "mns:Queue:SendMessage",
        "subject": f"acs:mns:{REGION}:{ACCOUNT_ID}:queues/{queue}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "datacontenttype": "application/json;charset=utf-8",
        "aliyunaccountid": ACCOUNT_ID,
        "aliyunregionid": REGION,
        "data": {
            "requestId": uuid.uuid4().hex.upper()[:24],
            "messageId": message.message_id,
            "messageBody": message.message_body,
        },
    }


class LocalSmqTrigger:
    """Drains one SMQ queue into an FC handler, as the EventBridge trigger would."""

    def __init__(
        self,
        queue: Any,  # an mns Queue (encoding off) on the refresh queue
        dead_letter_queue: Any,  # an mns Queue on the dead-letter queue
        handler: Handler,
        batch_size: int = 16,
        batch_window_seconds: float = 2.0,
        retry_attempts: int = 2,
        timeout_seconds: int = 60,
    ) -> None:
        self.queue, self.dead_letter_queue, self.handler = queue, dead_letter_queue, handler
        self.batch_size, self.batch_window, self.retries = batch_size, batch_window_seconds, retry_attempts
        self.function = FunctionMeta(name="waba-lookup-worker", timeout=timeout_seconds)
        self.stats = TriggerStats()

    def drain(
        self,
        until_empty_for: float = 3.0,
        on_batch: Callable[[TriggerStats], None] | None = None,
        time_limit: float = float("inf"),
    ) -> TriggerStats:
        """Run until the queue has had nothing to deliver for `until_empty_for` seconds (a delayed re-send counts once
        it is visible), or until the time limit."""
        started = quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < until_empty_for and time.monotonic() - started < time_limit:
            batch = self._collect()
            if not batch:
                continue
            self._deliver(batch)
            quiet_since = time.monotonic()
            if on_batch:
                on_batch(self.stats)
        return self.stats

    def _collect(self) -> list[Any]:
        from mns.mns_exception import MNSServerException

        batch: list[Any] = []
        window_ends = time.monotonic() + self.batch_window
        while len(batch) < self.batch_size and time.monotonic() < window_ends:
            try:
                batch += self.queue.batch_receive_message(min(SMQ_BATCH, self.batch_size - len(batch)), 1)
            except MNSServerException as error:
                if error.type != "MessageNotExist":
                    raise
        self.stats.received += len(batch)
        return batch

    def _deliver(self, batch: list[Any]) -> None:
        event = json.dumps([cloud_event(self.queue.queue_name, m) for m in batch]).encode()
        for attempt in range(1 + self.retries):
            self.stats.invocations += 1
            try:
                answer = self.handler(event, LocalFcContext(function=self.function))
            except Exception:  # noqa: BLE001 - a failed invocation, as FC reports it to the trigger
                self.stats.failed_invocations += 1
                time.sleep(min(2.0, 0.2 * 2**attempt))
                continue
            for key, value in (answer or {}).items():
                if isinstance(value, int):
                    self.stats.outcomes[key] = self.stats.outcomes.get(key, 0) + value
            break
        else:  # errorsTolerance ALL: the events go to the dead-letter queue, and the stream moves on
            from mns.queue import Message

            events = [Message(json.dumps(e)) for e in json.loads(event)]
            for start in range(0, len(events), SMQ_BATCH):
                self.dead_letter_queue.batch_send_message(events[start : start + SMQ_BATCH])
            self.stats.dead_lettered_events += len(batch)
        from mns.mns_exception import MNSServerException

        handles = [m.receipt_handle for m in batch]
        for start in range(0, len(handles), SMQ_BATCH):
            try:
                self.queue.batch_delete_message(handles[start : start + SMQ_BATCH])
            except MNSServerException as error:  # handles past the visibility timeout: delivered again, at least once
                if error.type not in ("MessageNotExist", "ReceiptHandleError"):
                    raise
                self.stats.late_deletes += 1
