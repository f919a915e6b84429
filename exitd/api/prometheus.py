"""Prometheus metrics in the text exposition format 0.0.4, read at scrape time from the objects that count.

Nothing is counted here: the exit engine and the RPC client keep plain counters as they work, and a scrape
reads them. Metrics therefore cost nothing between scrapes and cannot disagree with what the daemon did.
Counters start at zero with the process; Prometheus' rate() handles the reset of a restart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from exitd import __version__
from exitd.chain.rpc import BitcoinRpc
from exitd.engine.engine import ExitEngine
from exitd.engine.model import LiveExit
from exitd.engine.states import ExitStateKind
from exitd.wallet.onchain import OnchainBalance

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    SUMMARY = "summary"


@dataclass(frozen=True)
class Sample:
    """One line of a family: `suffix` is '' or, for a summary, '_sum' / '_count'."""

    value: float
    labels: tuple[tuple[str, str], ...] = ()
    suffix: str = ""


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    type: MetricType
    samples: tuple[Sample, ...]


def counter(name: str, help: str, value: float) -> Metric:
    return Metric(name, help, MetricType.COUNTER, (Sample(value),))


def gauge(name: str, help: str, value: float) -> Metric:
    return Metric(name, help, MetricType.GAUGE, (Sample(value),))


def summary(name: str, help: str, total: float, count: int) -> Metric:
    """A summary without quantiles: the sum and count that rate() turns into a mean per interval."""
    return Metric(
        name, help, MetricType.SUMMARY, (Sample(total, suffix="_sum"), Sample(count, suffix="_count"))
    )


def exits_by_state(exits: Iterable[LiveExit]) -> dict[ExitStateKind, int]:
    """How many exits are in each state, every state present (a gauge that vanishes at 0 misleads)."""
    counts = dict.fromkeys(ExitStateKind, 0)
    for e in exits:
        counts[e.state.kind] += 1
    return counts


def engine_metrics(engine: ExitEngine) -> list[Metric]:
    by_state = exits_by_state(engine.exits.values())
    metrics = [
        Metric(
            "exitd_exits",
            "Exits by state.",
            MetricType.GAUGE,
            tuple(Sample(n, (("state", kind.value),)) for kind, n in by_state.items()),
        ),
        counter(
            "exitd_packages_broadcast_total",
            "Exit transaction packages (exit tx + CPFP child) accepted into the node's mempool.",
            engine.packages_broadcast,
        ),
        Metric(
            "exitd_fees_paid_sat_total",
            "Fees paid by exitd's wallet, in sat: CPFP children of exit txs and claim txs.",
            MetricType.COUNTER,
            (
                Sample(engine.cpfp_fees_paid, (("kind", "cpfp"),)),
                Sample(engine.claim_fees_paid, (("kind", "claim"),)),
            ),
        ),
        counter("exitd_cycles_total", "Progress cycles completed.", engine.cycles),
        counter("exitd_cycle_errors_total", "Progress cycles that failed as a whole.", engine.cycle_errors),
        gauge(
            "exitd_cycles_max_concurrent",
            "Most progress cycles ever running at once (1: they never overlapped).",
            engine.max_concurrent_cycles,
        ),
        summary(
            "exitd_cycle_duration_seconds",
            "Time spent in progress cycles, failed ones included.",
            engine.cycle_seconds,
            engine.cycles + engine.cycle_errors,
        ),
    ]
    if engine.last_tip is not None:
        metrics.append(
            gauge("exitd_chain_tip_height", "Chain tip seen by the last cycle.", engine.last_tip.height)
        )
    return metrics


def rpc_metrics(rpc: BitcoinRpc) -> list[Metric]:
    return [
        counter(
            "exitd_rpc_requests_total", "HTTP requests to bitcoind's RPC (a batch is one).", rpc.round_trips
        ),
        counter(
            "exitd_rpc_failures_total",
            "RPC requests that got no usable answer (unreachable, refused, not JSON).",
            rpc.failures,
        ),
        summary(
            "exitd_rpc_latency_seconds",
            "Round-trip time of RPC requests.",
            rpc.latency_total,
            rpc.round_trips,
        ),
    ]


def wallet_balance(balance: OnchainBalance) -> Metric:
    """The wallet pays every CPFP child: alert on this before an exit stalls for want of fees."""
    states = {
        "confirmed": balance.confirmed,
        "trusted_pending": balance.trusted_pending,
        "untrusted_pending": balance.untrusted_pending,
        "immature": balance.immature,
    }
    return Metric(
        "exitd_wallet_balance_sat",
        "On-chain wallet balance in sat, by confirmation state (barkd's OnchainBalance).",
        MetricType.GAUGE,
        tuple(Sample(value, (("state", state),)) for state, value in states.items()),
    )


def build_info(network: str) -> Metric:
    return Metric(
        "exitd_build_info",
        "Always 1; the labels say which exitd runs on which network.",
        MetricType.GAUGE,
        (Sample(1, (("version", __version__), ("network", network))),),
    )


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    """The exposition text: HELP and TYPE before each family's samples, a newline after every line."""
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.type.value}")
        for sample in metric.samples:
            labels = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sample.labels)
            selector = f"{{{labels}}}" if labels else ""
            lines.append(f"{metric.name}{sample.suffix}{selector} {_format_value(sample.value)}")
    return "\n".join(lines) + "\n"
