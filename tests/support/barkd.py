"""A barkd stand-in on loopback: the wallet VTXO and notification endpoints of barkd's REST API, exactly as
barkd's OpenAPI documents (0.1.4 or 0.6.0) define them, fed with VTXOs the regtest forge minted.

Every answer it gives is first judged against the document of its version (tests/support/barkd_schema.py);
an answer barkd's document would not allow is recorded in `violations`, which the fixture that owns the
stand-in asserts empty. A 0.1.4 stand-in has no notifications/wait (barkd added it later) and no `exited`
state. Served from a thread of its own, so a test drives it with plain calls: add a VTXO, change its state
(0.6.0 pushes a movement notification then), stop it to play a wallet gone offline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from exitd.ark.policy import UserPolicy
from exitd.ark.vtxo import Vtxo
from tests.support.barkd_schema import assert_answer
from tests.support.loopback import LoopbackServer

TOKEN = "stand-in-barkd-token"
# Seconds a notifications/wait without news is held open before it answers an empty list.
WAIT_SECONDS = 5.0


@dataclass
class _Held:
    vtxo: Vtxo
    state: str


def vtxo_info(vtxo: Vtxo, state: str) -> dict[str, Any]:
    """barkd's WalletVtxoInfo of a VTXO."""
    policy = vtxo.policy
    assert isinstance(policy, UserPolicy)
    return {
        "id": str(vtxo.id),
        "amount_sat": vtxo.amount,
        "policy_type": policy.kind,
        "user_pubkey": policy.user_pubkey.hex(),
        "server_pubkey": vtxo.server_pubkey.hex(),
        "expiry_height": vtxo.expiry_height,
        "exit_delta": vtxo.exit_delta,
        "chain_anchor": str(vtxo.anchor_point),
        "exit_depth": vtxo.exit_depth,
        "state": {"type": state},
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class BarkdStandIn(LoopbackServer):
    def __init__(self, version: str) -> None:
        assert version in ("0.1.4", "0.6.0")
        super().__init__()
        self.version = version
        self.violations: list[str] = []
        self.served: list[str] = []  # "GET <path>" of every request answered
        self._vtxos: dict[str, _Held] = {}
        self._pushed: list[tuple[datetime, dict[str, Any]]] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_token(self, path: Path) -> Path:
        path.write_text(TOKEN + "\n")
        return path

    # What the test does to the wallet.

    def add(self, vtxo: Vtxo, state: str = "spendable") -> str:
        with self._lock:
            self._vtxos[str(vtxo.id)] = _Held(vtxo, state)
        self._push(str(vtxo.id), "movement-created", received=vtxo.amount)
        return str(vtxo.id)

    def set_state(self, vtxo_id: str, state: str) -> None:
        """The wallet moved the VTXO (a payment, a refresh, its own exit); 0.6.0 tells its listeners."""
        with self._lock:
            self._vtxos[vtxo_id].state = state
        self._push(vtxo_id, "movement-updated", received=0)

    def _push(self, vtxo_id: str, kind: str, received: int) -> None:
        if self.version == "0.1.4":
            return
        moment = datetime.now(UTC)
        stamp = _iso(moment)
        movement = {
            "id": len(self._pushed) + 1,
            "status": "successful",
            "subsystem": {"name": "bark.round", "kind": "refresh"},
            "intended_balance_sat": received,
            "effective_balance_sat": received,
            "offchain_fee_sat": 0,
            "sent_to": [],
            "received_on": [],
            "input_vtxos": [] if received else [vtxo_id],
            "output_vtxos": [vtxo_id] if received else [],
            "exited_vtxos": [],
            "time": {"created_at": stamp, "updated_at": stamp, "completed_at": stamp},
        }
        with self._lock:
            self._pushed.append((moment, {"type": kind, "movement": movement}))

    # barkd's endpoints.

    def _answer(self, request: web.Request, template: str, status: int, body: Any) -> web.Response:
        try:
            assert_answer("GET", template, status, body, self.version)
        except AssertionError as e:
            self.violations.append(str(e))
        self.served.append(f"GET {request.path}")
        return web.json_response(body, status=status)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401, text="missing or wrong auth token")
        response: web.StreamResponse = await handler(request)
        return response

    async def _list(self, request: web.Request) -> web.Response:
        everything = request.query.get("all") == "true"
        with self._lock:
            held = [(h.vtxo, h.state) for h in self._vtxos.values()]
        body = [vtxo_info(v, s) for v, s in held if everything or s in ("spendable", "locked")]
        return self._answer(request, "/api/v1/wallet/vtxos", 200, body)

    async def _encoded(self, request: web.Request) -> web.Response:
        template = "/api/v1/wallet/vtxos/{id}/encoded"
        vtxo_id = request.match_info["id"]
        with self._lock:
            held = self._vtxos.get(vtxo_id)
        if held is None:
            body = {"message": f"VTXO {vtxo_id} not found", "resources": [vtxo_id]}
            return self._answer(request, template, 404, body)
        return self._answer(request, template, 200, {"encoded": held.vtxo.encode().hex()})

    async def _wait(self, request: web.Request) -> web.Response:
        raw = request.query.get("since")
        try:
            since = datetime.fromisoformat(raw) if raw else None
        except ValueError:
            return self._answer(request, "/api/v1/notifications/wait", 400, {"message": f"bad since {raw!r}"})
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            with self._lock:
                news = [(t, n) for t, n in self._pushed if since is None or t > since]
            if news or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        body = {
            "notifications": [n for _, n in news],
            "last_pushed_at": _iso(news[-1][0]) if news else raw,
        }
        return self._answer(request, "/api/v1/notifications/wait", 200, body)

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/v1/wallet/vtxos", self._list)
        app.router.add_get("/api/v1/wallet/vtxos/{id}/encoded", self._encoded)
        if self.version == "0.6.0":
            app.router.add_get("/api/v1/notifications/wait", self._wait)
        return app


def stand_in_served(version: str) -> Iterator[BarkdStandIn]:
    """For a fixture: a started stand-in of `version`, stopped after the test, whose answers must all have
    followed barkd's document."""
    barkd = BarkdStandIn(version)
    barkd.start()
    try:
        yield barkd
    finally:
        barkd.stop()
    assert barkd.violations == [], barkd.violations
