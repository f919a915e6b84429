"""Prometheus metrics, read at scrape time from the objects that count; prometheus_client writes the text.

Nothing is counted here: the exit engine, the RPC client and the alerts keep plain counters as they work,
and ExitdCollector reads them when Prometheus scrapes, so metrics cost nothing between scrapes and cannot
disagree with what the daemon did. What only bitcoind knows (whether it answers, its last block, the wallet
balance) is asked once per scrape and kept in a NodeReading: while bitcoind is down, exitd_node_up says 0
and the last block and the balances stay at what was last seen, instead of vanishing from the graphs an
operator alerts on. Counters start at zero with the process; Prometheus' rate() handles a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from exitd import __version__
from exitd.chain.rpc import BitcoinRpc
from exitd.engine.alerts import AlertEvent, Alerts
from exitd.engine.engine import ExitEngine
from exitd.engine.model import LiveExit
from exitd.engine.states import ExitStateKind
from exitd.wallet.onchain import OnchainBalance

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


@dataclass
class NodeReading:
    """What scrapes learned from bitcoind: whether the last one reached it, and the last block and wallet
    balance seen (kept while it cannot be asked)."""

    up: bool = False
    height: int | None = None
    block_time: int | None = None
    balance: OnchainBalance | None = None


def exits_by_state(exits: Iterable[LiveExit]) -> dict[ExitStateKind, int]:
    """How many exits are in each state, every state present (a gauge that vanishes at 0 misleads)."""
    counts = dict.fromkeys(ExitStateKind, 0)
    for e in exits:
        counts[e.state.kind] += 1
    return counts


class ExitdCollector(Collector):
    """Every exitd family, read from the engine, the RPC client, the alerts and the node reading."""

    def __init__(
        self, engine: ExitEngine, rpc: BitcoinRpc, alerts: Alerts | None, network: str, node: NodeReading
    ) -> None:
        self.engine = engine
        self.rpc = rpc
        self.alerts = alerts
        self.network = network
        self.node = node

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "exitd_build_info",
            "Always 1; the labels say which exitd runs on which network.",
            labels=("version", "network"),
        )
        info.add_metric((__version__, self.network), 1)
        yield info
        yield from self._engine()
        yield from self._rpc()
        yield from self._alerts()
        yield from self._node()

    def _engine(self) -> Iterator[Metric]:
        engine, counters = self.engine, self.engine.counters
        exits = GaugeMetricFamily("exitd_exits", "Exits by state.", labels=("state",))
        for kind, count in exits_by_state(engine.exits.values()).items():
            exits.add_metric((kind.value,), count)
        yield exits
        yield CounterMetricFamily(
            "exitd_packages_broadcast",
            "Exit transaction packages (exit tx + CPFP child) accepted into the node's mempool.",
            counters.packages_broadcast,
        )
        fees = CounterMetricFamily(
            "exitd_fees_paid_sat",
            "Fees paid by exitd's wallet, in sat: CPFP children of exit txs and claim txs.",
            labels=("kind",),
        )
        fees.add_metric(("cpfp",), counters.cpfp_fees_paid)
        fees.add_metric(("claim",), counters.claim_fees_paid)
        yield fees
        yield CounterMetricFamily("exitd_cycles", "Progress cycles completed.", counters.cycles)
        yield CounterMetricFamily(
            "exitd_cycle_errors", "Progress cycles that failed as a whole.", counters.cycle_errors
        )
        yield GaugeMetricFamily(
            "exitd_cycles_max_concurrent",
            "Most progress cycles ever running at once (1: they never overlapped).",
            counters.max_concurrent_cycles,
        )
        tally = counters.cycle_durations
        yield HistogramMetricFamily(
            "exitd_cycle_duration_seconds",
            "Time spent in progress cycles, failed ones included.",
            buckets=[(_bound(b), n) for b, n in tally.cumulative()],
            sum_value=tally.total,
        )
        if engine.last_tip is not None:
            yield GaugeMetricFamily(
                "exitd_chain_tip_height",
                "Chain tip seen by the last cycle with exits to watch.",
                engine.last_tip.height,
            )

    def _rpc(self) -> Iterator[Metric]:
        rpc = self.rpc
        yield CounterMetricFamily(
            "exitd_rpc_requests", "HTTP requests to bitcoind's RPC (a batch is one).", rpc.round_trips
        )
        yield CounterMetricFamily(
            "exitd_rpc_failures",
            "RPC requests that got no usable answer (unreachable, refused, not JSON).",
            rpc.failures,
        )
        yield SummaryMetricFamily(
            "exitd_rpc_latency_seconds",
            "Round-trip time of RPC requests, but the long polls that wait for a block.",
            count_value=rpc.latency_count,
            sum_value=rpc.latency_total,
        )

    def _alerts(self) -> Iterator[Metric]:
        raised = self.alerts.raised if self.alerts is not None else {}
        alerts = CounterMetricFamily(
            "exitd_alerts", "Alerts raised, by event (each is also a log line).", labels=("event",)
        )
        for alert in AlertEvent:
            alerts.add_metric((alert.value,), raised.get(alert, 0))
        yield alerts

    def _node(self) -> Iterator[Metric]:
        node = self.node
        yield GaugeMetricFamily(
            "exitd_node_up", "1 when bitcoind answered this scrape, else 0.", 1 if node.up else 0
        )
        if node.height is not None and node.block_time is not None:
            yield GaugeMetricFamily(
                "exitd_node_last_block_height", "Height of bitcoind's best block, as last seen.", node.height
            )
            yield GaugeMetricFamily(
                "exitd_node_last_block_timestamp_seconds",
                "Header time of bitcoind's best block, as last seen (unix seconds): alert when it is old.",
                node.block_time,
            )
        if node.balance is not None:
            yield wallet_balance(node.balance)


def wallet_balance(balance: OnchainBalance) -> GaugeMetricFamily:
    """The wallet pays every CPFP child: alert on this before an exit stalls for want of fees."""
    family = GaugeMetricFamily(
        "exitd_wallet_balance_sat",
        "On-chain wallet balance in sat, by confirmation state (barkd's OnchainBalance), as last seen.",
        labels=("state",),
    )
    for state, value in (
        ("confirmed", balance.confirmed),
        ("trusted_pending", balance.trusted_pending),
        ("untrusted_pending", balance.untrusted_pending),
        ("immature", balance.immature),
    ):
        family.add_metric((state,), value)
    return family


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def exposition(collector: Collector) -> bytes:
    """The text exposition of one collector, written by prometheus_client."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
