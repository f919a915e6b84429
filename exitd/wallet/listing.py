"""The wallet's coins as bitcoind's watch-only wallet lists them, each with the BIP86 key that spends it.

A cycle lists them once: the funding plan's listing is handed on to the children built right after it.
After a block that confirms a split, listunspent waits on bitcoind's wallet and costs a tenth of a second at
a thousand coins; the same call twice in one cycle doubled that.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from exitd.ark.encoding import OutPoint
from exitd.chain.fees import btc_to_sat
from exitd.chain.rpc import RpcError
from exitd.log import event, get_logger
from exitd.wallet.coinselection import Coin
from exitd.wallet.keys import Keychain
from exitd.wallet.watchonly import WatchOnlyWallet

log = get_logger("wallet")

# A handed-on listing is taken only this fresh: longer than the steps between a cycle's funding plan and
# its children take, shorter than the gap to another cycle.
LISTING_HANDOFF_SECONDS = 2.0


class CoinListing:
    def __init__(self, watch_only: WatchOnlyWallet) -> None:
        self.watch_only = watch_only
        # The key of each (descriptor, script) a listing showed, or None when not ours: every listing checks
        # every coin, and without this each CPFP child would cost a descriptor parse and a BIP32 derivation
        # per coin.
        self._keys: dict[tuple[str, bytes], tuple[Keychain, int] | None] = {}
        # The listing handed on, with when it was read.
        self._handoff: tuple[float, list[Coin], dict[str, Any]] | None = None

    async def read(self, hand_on: bool = False, take: bool = False) -> tuple[list[Coin], dict[str, Any]]:
        """One round trip: the coins, and bitcoind's balances with the block the wallet has processed, which
        is what its confirmation counts are relative to.

        `hand_on`: keep this listing for the next read with `take`, which uses it if it is under
        LISTING_HANDOFF_SECONDS old and nothing read or forgot it since. Reservations are not part of a
        listing (every caller reads them afresh), so a handed-on listing can only miss a coin that arrived
        since, never offer one that was taken."""
        handoff, self._handoff = self._handoff, None
        if take and handoff is not None and time.monotonic() - handoff[0] < LISTING_HANDOFF_SECONDS:
            return handoff[1], handoff[2]
        unspent, balances = await self.watch_only.batch([("listunspent", [0]), ("getbalances", [])])
        for answer in (unspent, balances):
            if isinstance(answer, RpcError):
                raise answer
        wallet_height = int(balances["lastprocessedblock"]["height"])
        coins = [c for utxo in unspent if (c := self._coin(utxo, wallet_height)) is not None]
        if hand_on:
            self._handoff = (time.monotonic(), coins, balances)
        return coins, balances

    def forget(self) -> None:
        """Drop a handed-on listing: the wallet is spending coins."""
        self._handoff = None

    def _coin(self, utxo: dict[str, Any], wallet_height: int) -> Coin | None:
        """The Coin of a listunspent entry, if this wallet can sign for it (its key origin is in the
        account and the key derived there pays to its script)."""
        spk = bytes.fromhex(utxo["scriptPubKey"])
        located = self._own_key(str(utxo.get("desc", "")), spk)
        if located is None:
            event(log, logging.WARNING, "utxo_not_signable", txid=utxo["txid"], vout=utxo["vout"])
            return None
        confirmations = int(utxo["confirmations"])
        return Coin(
            outpoint=OutPoint.of(utxo["txid"], utxo["vout"]),
            value=btc_to_sat(utxo["amount"]),
            script_pubkey=spk,
            keychain=located[0],
            index=located[1],
            height=wallet_height - confirmations + 1 if confirmations > 0 else None,
            trusted=bool(utxo["safe"]),
        )

    def _own_key(self, descriptor: str, script_pubkey: bytes) -> tuple[Keychain, int] | None:
        """The (keychain, index) of the account's key that `descriptor` names and that pays to
        `script_pubkey`; None when the coin is not ours to sign for."""
        if (descriptor, script_pubkey) not in self._keys:
            account = self.watch_only.account
            located = account.locate(descriptor)
            ours = located is not None and account.script_pubkey(*located) == script_pubkey
            self._keys[(descriptor, script_pubkey)] = located if ours else None
        return self._keys[(descriptor, script_pubkey)]
