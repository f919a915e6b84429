"""The store's exit records: round trips, and revision 0006's conversion of what revision 0005 stored."""

import importlib.util
import json
from types import ModuleType
from typing import Any

import pytest

from exitd.api.shapes import V014, state_json
from exitd.engine.errors import (
    ClaimFeeExceedsOutput,
    ClaimMarketUnknown,
    FeeBudgetExceeded,
    InsufficientConfirmedFunds,
)
from exitd.engine.persist import stage
from exitd.engine.records import (
    decode_error,
    decode_state,
    encode_error,
    encode_state,
    state_of,
    state_record,
)
from exitd.engine.states import ExitState, ExitStateKind, TxStatusKind
from exitd.store.db import alembic_config
from tests.support.exit_states import STATES
from tests.support.vectors import exits_0005


def revision_0006() -> ModuleType:
    """The migration module as alembic loads it (its conversion is frozen there, not imported)."""
    path = alembic_config("").get_main_option("script_location")
    spec = importlib.util.spec_from_file_location("rev0006", f"{path}/versions/0006_exit_records.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.kind.value)
def test_state_record_round_trip(state: ExitState) -> None:
    assert decode_state(encode_state(state)) == state


def test_records_are_not_barkds_json() -> None:
    """The record names what the engine names (kind, tip, blocks as pairs), not barkd's wire fields."""
    record = state_record(STATES[1])
    assert record["kind"] == "processing" and record["tip"] == 101 and "type" not in record
    assert record["txs"][6][1]["block"] == [105, "ab" * 32]
    assert "min_fee_rate_kwu" not in json.dumps(record) and "tip_height" not in record


def test_error_record_keeps_class_message_and_data() -> None:
    record = json.loads(encode_error(InsufficientConfirmedFunds(5000, 12)))
    assert record["kind"] == "InsufficientConfirmedFunds" and record["fields"] == {
        "needed": 5000,
        "available": 12,
    }
    assert "fund it" in record["message"]
    assert json.loads(encode_error(FeeBudgetExceeded(1, 2, 0.5)))["kind"] == "FeeBudgetExceeded"


@pytest.mark.parametrize("stored", exits_0005()["states"])
def test_0006_converts_every_state_0005_stored(stored: str) -> None:
    """What 0005 stored becomes a record that reads back as the same state: rendered in barkd 0.1.4's
    vocabulary it is exactly the stored JSON; the record is the engine's own encoding of that state; and
    the downgrade gives back what 0005 stored."""
    rev = revision_0006()
    wire: dict[str, Any] = json.loads(stored)
    record = rev.state_record(wire)
    state = state_of(record)
    assert state_json(state, V014) == wire
    assert state_record(state) == record
    assert rev.state_wire(record) == wire


@pytest.mark.parametrize("stored", exits_0005()["errors"])
def test_0006_converts_every_error_0005_stored(stored: str) -> None:
    rev = revision_0006()
    wire = json.loads(stored)
    record = rev.error_record(wire)
    assert record["kind"] != "InternalError" or wire["type"] == "internal-error"
    assert rev.error_wire(record) == wire


def test_a_log_line_names_the_stage_an_exit_moved_between() -> None:
    for state in STATES:
        text = stage(state)
        assert text.startswith(state.kind.value)
        if state.kind is ExitStateKind.PROCESSING:
            confirmed = sum(1 for tx in state.transactions if tx.status.kind is TxStatusKind.CONFIRMED)
            assert text.startswith(f"processing:{confirmed}/{len(state.transactions)}:")
        else:
            assert text == state.kind.value


@pytest.mark.parametrize(
    "error", [ClaimFeeExceedsOutput(12_000, 10_000, 2000, 1500, 1000), ClaimMarketUnknown(144, None)]
)
def test_a_held_claims_error_comes_back_from_the_store(error: ClaimFeeExceedsOutput) -> None:
    back = decode_error(encode_error(error))
    assert type(back) is type(error) and str(back) == str(error) and back.fields == error.fields


def test_other_errors_and_older_records_are_left_to_the_next_cycle() -> None:
    assert decode_error(None) is None
    assert decode_error(encode_error(InsufficientConfirmedFunds(5000, 12))) is None
    # A ClaimFeeExceedsOutput stored before it named its rate: nothing to hold it by.
    old = {"kind": "ClaimFeeExceedsOutput", "message": "m", "fields": {"needed": 1, "output": 2}}
    assert decode_error(json.dumps(old)) is None
