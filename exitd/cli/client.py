"""A client of a running exitd's REST API, for the command line: one method per endpoint, typed failures.

It speaks barkd's paths and JSON shapes only, so what the CLI shows is exactly what any barkd REST client
would get. Synchronous (urllib): a CLI command is one or two requests, and a blocking call is the simplest
thing that can be interrupted with Ctrl-C.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from exitd.config import Config
from exitd.daemon.datadir import read_token

# How long one request may take; `progress --wait` waits for blocks and has no limit.
REQUEST_TIMEOUT = 60.0

# Wildcard listen addresses and the loopback address to reach them on.
WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class ClientError(Exception):
    """A request that did not get a 2xx answer; the message says what to do about it."""


class DaemonUnreachable(ClientError):
    """Nothing answered at the configured REST address."""


class DaemonRefused(ClientError):
    """The daemon answered with an error status; `message` is its own (barkd's error shape)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def connect_host(listen_host: str) -> str:
    """Where to reach a daemon that listens on `listen_host` from this machine."""
    return WILDCARD_HOSTS.get(listen_host, listen_host)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _error_message(payload: bytes, status: int) -> str:
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return f"HTTP {status}"


class ExitdClient:
    def __init__(self, host: str, port: int, token: str) -> None:
        self.address = _netloc(host, port)
        self._token = token

    @classmethod
    def from_config(cls, config: Config) -> ExitdClient:
        """The daemon this config describes: its REST address and the token in its datadir."""
        return cls(connect_host(config.rest.host), config.rest.port, read_token(config))

    def request(
        self, method: str, path: str, body: Any = None, timeout: float | None = REQUEST_TIMEOUT
    ) -> Any:
        """The decoded JSON answer (or text, for non-JSON answers) of one request."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{self.address}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload, content_type = response.read(), response.headers.get_content_type()
        except urllib.error.HTTPError as e:
            raise DaemonRefused(e.code, _error_message(e.read(), e.code)) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            raise DaemonUnreachable(
                f"daemon not reachable at {self.address} — is `exitd run` running? "
                f"({getattr(e, 'reason', e)})"
            ) from None
        return json.loads(payload) if content_type == "application/json" else payload.decode()

    # One method per endpoint the CLI uses, named after what it does.

    def exit_statuses(self, which: str = "all", transactions: bool = True) -> list[dict[str, Any]]:
        """Every exit (`which` "all"), those still running ("live") or the finished ones ("finished")."""
        query = "?transactions=true" if transactions else ""
        return list(self.request("GET", f"/api/v1/exits/status/{which}{query}"))

    def exit_status(self, vtxo_id: str) -> dict[str, Any]:
        path = "/api/v1/exits/status/" + urllib.parse.quote(vtxo_id, safe=":")
        return dict(self.request("GET", path + "?transactions=true"))

    def tip(self) -> int:
        return int(self.request("GET", "/api/v1/bitcoin/tip")["tip_height"])

    def node_status(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/bitcoin/node"))

    def fee_estimate(self) -> dict[str, Any]:
        """The cost of exiting every VTXO not exiting yet, and the wallet's funding plan (`funding`)."""
        return dict(self.request("GET", "/api/v1/exits/fee"))

    def vtxos(self) -> list[dict[str, Any]]:
        """Every imported VTXO, spent ones too (an exit's VTXO is locked, then spent)."""
        return list(self.request("GET", "/api/v1/wallet/vtxos?all=true"))

    def import_vtxos(
        self, encoded: list[str], protect: bool = False, anchor_blocks: Sequence[str | int] = ()
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"vtxos": encoded, "protect": protect}
        if anchor_blocks:
            body["anchor_blocks"] = list(anchor_blocks)
        return list(self.request("POST", "/api/v1/wallet/import-vtxo", body))

    def mark_gone(self, vtxo_id: str) -> dict[str, Any]:
        path = "/api/v1/wallet/vtxos/" + urllib.parse.quote(vtxo_id, safe=":") + "/gone"
        return dict(self.request("POST", path))

    def source(self) -> dict[str, Any]:
        """Where VTXOs come from: the followed barkd and its last sync, or imports only."""
        return dict(self.request("GET", "/api/v1/wallet/source"))

    def start_exits(self, vtxo_ids: list[str] | None, force: bool = False) -> dict[str, Any]:
        if vtxo_ids is None:
            return dict(self.request("POST", "/api/v1/exits/start/all", {"force": force}))
        body = {"vtxos": vtxo_ids, "force": force}
        return dict(self.request("POST", "/api/v1/exits/start/vtxos", body))

    def progress(self, wait: bool, fee_rate: int | None) -> dict[str, Any]:
        body = {"wait": wait, "fee_rate": fee_rate}
        return dict(
            self.request("POST", "/api/v1/exits/progress", body, timeout=None if wait else REQUEST_TIMEOUT)
        )

    def claim(self, vtxo_ids: list[str] | None, destination: str, fee_rate: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"destination": destination, "fee_rate": fee_rate}
        if vtxo_ids is None:
            return dict(self.request("POST", "/api/v1/exits/claim/all", body))
        return dict(self.request("POST", "/api/v1/exits/claim/vtxos", {**body, "vtxos": vtxo_ids}))

    def next_address(self) -> dict[str, Any]:
        return dict(self.request("POST", "/api/v1/onchain/addresses/next"))

    def balance(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/onchain/balance"))

    def send(self, destination: str, amount_sat: int) -> str:
        body = {"destination": destination, "amount_sat": amount_sat}
        return str(self.request("POST", "/api/v1/onchain/send", body)["txid"])

    def drain(self, destination: str) -> str:
        return str(self.request("POST", "/api/v1/onchain/drain", {"destination": destination})["txid"])

    def utxos(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/onchain/utxos"))

    def transactions(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/onchain/transactions"))

    def cancel(self, vtxo_id: str) -> dict[str, Any]:
        path = "/api/v1/exits/cancel/" + urllib.parse.quote(vtxo_id, safe=":")
        return dict(self.request("POST", path))
