"""The shared budget's Hypothesis property (tests/unit/test_budget_stateful.py) with the record in each real store,
through its real client: DynamoDB (moto) and Tablestore (the stand-in). Fewer examples than in memory: each step is
several HTTP requests."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import boto3
import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test
from moto import mock_aws

from tests.support import REGION, create_budget_table
from tests.unit.test_budget_stateful import SETTINGS, SharedBudgetMachine
from waba_local.stand_ins.tablestore_stand_in import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, TablestoreStandIn
from waba_lookup.budget.dynamodb import DynamoLogStore
from waba_lookup.budget.store import LogStore
from waba_lookup.budget.tablestore import TablestoreLogStore
from waba_lookup.credentials import AccessKey, StaticCredentials

REAL_STORE = settings(SETTINGS, max_examples=60, stateful_step_count=40)
runs = itertools.count()


@pytest.fixture
def dynamodb() -> Iterator[object]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_budget_table(client, "budget")
        yield client


def test_the_property_holds_with_the_record_in_dynamodb(dynamodb: object) -> None:
    class OnDynamoDB(SharedBudgetMachine):
        def new_store(self) -> LogStore:
            return DynamoLogStore("budget", f"run-{next(runs)}", dynamodb)  # a record of its own per example

    run_state_machine_as_test(OnDynamoDB, settings=REAL_STORE)


def test_the_property_holds_with_the_record_in_tablestore() -> None:
    with TablestoreStandIn() as stand_in:
        stand_in.create_table("budget")
        key = StaticCredentials(AccessKey(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET))

        class OnTablestore(SharedBudgetMachine):
            def new_store(self) -> LogStore:
                return TablestoreLogStore(stand_in.endpoint, stand_in.instance, "budget", f"run-{next(runs)}", key)

        run_state_machine_as_test(OnTablestore, settings=REAL_STORE)
