"""Background refreshes, paced under the CAMS quota: from SQS with partial batch responses (`lambda_handler`), and
from SMQ through Function Compute's EventBridge trigger (`handler`)."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from waba_lookup.compose import get_refresh_queue
from waba_lookup.errors import BudgetUnavailable, ConfigurationError, WabaLookupError
from waba_lookup.lookup import DEADLINE_MARGIN_SECONDS, get_lookup, settle_by, worker_deadline
from waba_lookup.observability import count, logger, metrics, tracer
from waba_lookup.platforms import fc
from waba_lookup.queue.message import OutOfTime, PoisonMessage, refresh_message
from waba_lookup.queue.redelivery import POSTPONED_DELAY_SECONDS, Delivery, Redelivery, redelivery_queues, send_seconds

# An all-failed batch (CAMS down, throttled) is answered with every record in batchItemFailures rather than by
# raising: the records return to the queue after the visibility timeout either way, and a raised error would
# only add a failed invocation, an error alarm and a Lambda-level retry on top.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
not_attempted: list[SQSRecord] = []  # this invocation's records it had no time left for
postponed: list[SQSRecord] = []  # and those no CAMS call could be made for: the shared budget's store failed


def refresh_record(record: SQSRecord, lambda_context: LambdaContext) -> str:
    """Refresh one message's entry; raising returns the message to the queue (poison ones reach the DLQ)."""
    if postponed:  # the store failed for an earlier record: the rest of the batch waits with it
        postponed.append(record)
        raise BudgetUnavailable("not attempted: the shared CAMS budget could not be reached")
    # kept for what follows the last CAMS answer: its write-back and cache write, and requeuing what had no time
    requeue = get_refresh_queue().batches.call_seconds
    deadline = worker_deadline(get_lookup(), lambda_context.get_remaining_time_in_millis(), requeue)
    try:
        outcome = refresh_message(get_lookup(), record.body, deadline, time.monotonic())
    except BudgetUnavailable:
        postponed.append(record)
        logger.info(
            "refresh postponed: no CAMS call without the shared budget", extra={"message_id": record.message_id}
        )
        raise
    except PoisonMessage as error:
        count("PoisonMessages")
        logger.error("unprocessable message", extra={"message_id": record.message_id, "reason": error.message})
        raise
    except OutOfTime:
        not_attempted.append(record)
        raise
    except WabaLookupError as error:
        logger.info("refresh deferred", extra={"message_id": record.message_id, "code": error.code})
        raise
    count(f"Refresh_{outcome}")
    return outcome


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, object]:
    ready_to_refresh()
    not_attempted.clear()
    postponed.clear()
    response = process_partial_response(
        event=event, record_handler=refresh_record, processor=processor, context=context
    )
    requeue_not_attempted(response, context)
    # an instance's own log ends the invocation holding no live permit (SharedBudget.settle); a shared one returns
    get_lookup().budget.settle(settle_by(context.get_remaining_time_in_millis()))
    return response


def ready_to_refresh() -> None:
    """A configuration that cannot work fails the invocation, logged and counted, before any record is touched:
    failing every record instead would only show when the backlog reached the dead-letter queue."""
    try:
        get_lookup().ready_to_refresh()
    except ConfigurationError as error:
        logger.error("configuration error: the batch is not processed", extra={"reason": str(error)})
        count("ConfigurationErrors")
        raise


def requeue_not_attempted(response: dict[str, Any], context: LambdaContext) -> None:
    """Send the records left for want of time, or postponed (later) for want of the shared budget, to the queue
    again and report them done, so that no receive counts against them towards the dead-letter queue; a record that
    cannot be sent stays a failure."""
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
    requeued: set[str] = set()
    for records, delay in ((not_attempted, 0), (postponed, POSTPONED_DELAY_SECONDS)):
        if records:
            unsent, _ = get_refresh_queue().send_bodies([r.body for r in records], deadline, delay)
            requeued |= {r.message_id for i, r in enumerate(records)} - {records[i].message_id for i in unsent}
    if not requeued:
        return
    count("RecordsRequeued", len(requeued))
    failures = response["batchItemFailures"]
    response["batchItemFailures"] = [f for f in failures if f["itemIdentifier"] not in requeued]


def handler(event: bytes, context: Any) -> dict[str, int]:
    """Function Compute's SMQ trigger (EventBridge, CloudEvents): the same item logic, with failed items sent on
    (re-sent with a delay, or dead-lettered) before returning, since a batch there succeeds or fails whole."""
    started = time.monotonic()
    return _refresh_fc(fc.queue_messages(event), fc.begin_invocation(context, started))


@logger.inject_lambda_context(log_event=False)
def _refresh_fc(messages: list[fc.QueueMessage], context: fc.FcContext) -> dict[str, int]:
    ready_to_refresh()
    lookup, plan = get_lookup(), Redelivery()
    queue, dead_letter_queue = redelivery_queues(lookup.settings)  # configuration errors fail the invocation
    final = send_seconds(queue, dead_letter_queue, len(messages))  # every failed item sent on before returning
    deadline = worker_deadline(lookup, context.get_remaining_time_in_millis(), final)
    budget_up = True
    for message in messages:
        delivery = Delivery.read(message.body)
        if not budget_up:
            plan.postponed(delivery)
            continue
        try:
            refresh_message(lookup, delivery.body, deadline, time.monotonic())
        except BudgetUnavailable:
            logger.info(
                "refresh postponed: no CAMS call without the shared budget", extra={"message_id": message.message_id}
            )
            plan.postponed(delivery)
            budget_up = False
        except PoisonMessage as error:
            logger.error("unprocessable message", extra={"message_id": message.message_id, "reason": error.message})
            plan.dead_letter(delivery, error.code)
        except OutOfTime:
            plan.not_attempted(delivery)
        except WabaLookupError as error:
            logger.info("refresh deferred", extra={"message_id": message.message_id, "code": error.code})
            plan.failed(delivery, error.code)
    plan.send(queue, dead_letter_queue)  # raises if it cannot: the trigger then retries the whole batch
    lookup.budget.settle(settle_by(context.get_remaining_time_in_millis()))
    return {"received": len(messages), "resent": len(plan.retries), "deadLettered": len(plan.dead)}
