"""schemathesis over the live daemon: every operation of an OpenAPI document, generated inputs, checks.

schemathesis' pytest loader (`from_fixture`) needs pytest internals that pytest 9 no longer has, so each
operation runs as a plain hypothesis test over `operation.as_strategy()`; the failures of every operation
are collected, so one run reports them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode

from tests.support.daemon import DaemonProcess

Check = Callable[..., Any]


def live_config(daemon: DaemonProcess) -> schemathesis.Config:
    """Requests go to the daemon on loopback, with its token."""
    return schemathesis.Config.from_dict(
        {
            "base-url": f"http://127.0.0.1:{daemon.port}",
            "headers": {"Authorization": f"Bearer {daemon.token}"},
            "request-timeout": 30,
        }
    )


def operations(schema: schemathesis.BaseSchema) -> list[APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


def fuzz_operation(
    operation: APIOperation, mode: GenerationMode, checks: Sequence[Check], max_examples: int
) -> str | None:
    """Run `max_examples` generated cases of `operation`; the failure report, or None when all pass."""

    @settings(
        max_examples=max_examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        case.call_and_validate(checks=list(checks))

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid: no parameters or body, or only free-form strings (any one is valid).
        if mode is GenerationMode.POSITIVE:
            return f"{operation.label}: no input could be generated"
    except (Exception, BaseExceptionGroup) as e:  # schemathesis' FailureGroup is a BaseExceptionGroup
        return f"{operation.label} ({mode.value}): {e}"
    return None
