"""What handlers may use: the services the daemon wired, reachable from any request."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from exitd.chain.fees import FeeEstimator
from exitd.chain.rpc import BitcoinRpc
from exitd.config import Config
from exitd.engine.alerts import Alerts
from exitd.engine.engine import ExitEngine
from exitd.source.barkd import BarkdFollower
from exitd.store.db import Store
from exitd.wallet.onchain import OnchainWallet
from exitd.wallet.vtxos import VtxoBook


@dataclass
class Services:
    config: Config
    rpc: BitcoinRpc
    fees: FeeEstimator
    store: Store
    vtxos: VtxoBook
    engine: ExitEngine
    wallet: OnchainWallet
    # The followed barkd ([barkd]); None: VTXOs come by import only.
    source: BarkdFollower | None = None
    # Alerts raised (what /metrics counts); None where no alerts run (benchmarks).
    alerts: Alerts | None = None


SERVICES = web.AppKey("services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]
