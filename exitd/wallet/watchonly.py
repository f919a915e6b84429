"""bitcoind's watch-only wallet of the mnemonic: made, loaded and given the account's descriptors.

bitcoind does the scanning. At set-up it gets the account's two public descriptors (receive and change) in a
watch-only descriptor wallet of its own, rescanning from the wallet's birthday; from then on it follows
blocks, reorgs and the mempool, and keeps its keypool (1000 by default, `-keypool`) of addresses derived
beyond the last one used, which is the gap limit. Every call to that wallet goes through `call` or `batch`,
which set it up first and load it again if it was unloaded behind exitd's back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from exitd.chain.rpc import (
    NO_RETRY,
    BitcoinRpc,
    NodeUnreachable,
    RpcError,
    RpcMethodNotFound,
    RpcWalletAlreadyLoaded,
    RpcWalletNotFound,
)
from exitd.log import event, get_logger
from exitd.store.db import Store
from exitd.store.meta import WALLET_BIRTHDAY_HEIGHT, WALLET_CREATED_AT, WALLET_FINGERPRINT, get_meta, set_meta
from exitd.wallet.errors import WalletDisabled, WalletMismatch
from exitd.wallet.keys import Bip86Account, Keychain
from exitd.wallet.seed import WalletSeed, master_fingerprint

log = get_logger("wallet")


def canonical_descriptor(descriptor: str) -> str:
    """A descriptor without its checksum and with bitcoind's 'h' for hardened steps, for comparison."""
    return descriptor.split("#", 1)[0].replace("'", "h")


class WatchOnlyWallet:
    def __init__(
        self,
        rpc: BitcoinRpc,
        store: Store,
        seed: WalletSeed,
        network: str,
        wallet_name: str = "",
        birthday_height: int | None = None,
    ) -> None:
        """`wallet_name` names bitcoind's watch-only wallet, by default exitd-<fingerprint> so that wallets
        of several datadirs can share a node; `birthday_height` (config) is where a restored wallet's
        coins are searched from when no birthday was given at its creation."""
        self.rpc = rpc
        self.store = store
        self.seed = seed
        self.network = network
        self.configured_wallet_name = wallet_name
        self.birthday_height = birthday_height
        self._account: Bip86Account | None = None
        self._ready = False
        self._setup_lock = asyncio.Lock()

    @property
    def account(self) -> Bip86Account:
        """The BIP86 account of the mnemonic; NoWallet until a wallet exists."""
        if self._account is None:
            self._account = Bip86Account.from_mnemonic(self.seed.mnemonic, self.network)
        return self._account

    @property
    def fingerprint(self) -> str | None:
        """The BIP32 master fingerprint (hex), or None before a wallet exists."""
        return self.account.master_fingerprint.hex() if self.seed.exists else None

    @property
    def bitcoind_wallet(self) -> str:
        return self.configured_wallet_name or f"exitd-{self.account.master_fingerprint.hex()}"

    # Set-up.

    async def create(self, mnemonic: str | None = None, birthday_height: int | None = None) -> str:
        """Make the wallet (a new mnemonic, or the given one, restored from `birthday_height`), the same one
        `exitd init` makes, and start using it; returns its fingerprint. WalletExists if there is one."""
        async with self._setup_lock:
            words = self.seed.create(mnemonic)
            async with self.store.session() as session:
                if birthday_height is not None:
                    await set_meta(session, WALLET_BIRTHDAY_HEIGHT, str(birthday_height))
                elif mnemonic is None:
                    await set_meta(session, WALLET_CREATED_AT, str(int(time.time())))
        fingerprint = master_fingerprint(words)
        event(log, logging.INFO, "wallet_created", fingerprint=fingerprint, restored=mnemonic is not None)
        try:
            await self.setup()
        except RpcError as e:
            event(log, logging.WARNING, "wallet_setup_deferred", error=str(e))
        return fingerprint

    async def setup(self) -> None:
        """Make bitcoind's watch-only wallet hold this wallet's descriptors (create, load or import them as
        needed). WalletDisabled on a node without wallets; a no-op, but for that check, before a wallet
        exists."""
        async with self._setup_lock:
            try:
                loaded = await self.rpc.call("listwallets")
            except RpcMethodNotFound:
                raise WalletDisabled() from None
            if not self.seed.exists:
                event(log, logging.INFO, "no_wallet_yet")
                return
            await self._check_database_wallet()
            name = self.bitcoind_wallet
            if name not in loaded:
                await self._load_or_create(name)
            await self._import_descriptors(name)
            self._ready = True
            event(log, logging.INFO, "wallet_ready", fingerprint=self.fingerprint, bitcoind_wallet=name)

    async def _check_database_wallet(self) -> None:
        """Coin reservations and exits belong to one wallet: refuse another mnemonic on the same database."""
        fingerprint = self.account.master_fingerprint.hex()
        async with self.store.session() as session:
            known = await get_meta(session, WALLET_FINGERPRINT)
            if known is None:
                await set_meta(session, WALLET_FINGERPRINT, fingerprint)
        if known not in (None, fingerprint):
            raise WalletMismatch(
                f"this database belongs to wallet {known}, but the mnemonic file is wallet {fingerprint}; "
                "put the right mnemonic back or use another datadir"
            )

    async def _load_or_create(self, name: str) -> None:
        try:
            await self.rpc.call("loadwallet", name, True)
            event(log, logging.INFO, "bitcoind_wallet_loaded", bitcoind_wallet=name)
        except RpcWalletAlreadyLoaded:
            pass
        except RpcWalletNotFound:
            # Watch-only (no private keys), blank, descriptors, loaded whenever bitcoind starts.
            await self.rpc.call("createwallet", name, True, True, "", False, True, True)
            event(log, logging.INFO, "bitcoind_wallet_created", bitcoind_wallet=name)

    async def _import_descriptors(self, name: str) -> None:
        listed = await self.rpc.call("listdescriptors", wallet=name)
        present = {canonical_descriptor(d["desc"]) for d in listed["descriptors"]}
        ours = {keychain: self.account.descriptor(keychain) for keychain in Keychain}
        foreign = present - {canonical_descriptor(d) for d in ours.values()}
        if foreign:
            raise WalletMismatch(
                f"bitcoind wallet '{name}' watches descriptors of another wallet; "
                "set bitcoind.wallet_name to a wallet of exitd's own (or leave it empty)"
            )
        missing = [k for k in Keychain if canonical_descriptor(ours[k]) not in present]
        if not missing:
            return
        timestamp = await self._rescan_from()
        requests = []
        for keychain in missing:
            info = await self.rpc.call("getdescriptorinfo", ours[keychain])
            requests.append(
                {
                    "desc": info["descriptor"],
                    "timestamp": timestamp,
                    "active": True,
                    "internal": keychain is Keychain.INTERNAL,
                }
            )
        since = (
            timestamp if isinstance(timestamp, str) else datetime.fromtimestamp(timestamp, UTC).isoformat()
        )
        event(log, logging.INFO, "descriptors_importing", bitcoind_wallet=name, rescan_from=since)
        try:
            results = await self.rpc.call("importdescriptors", requests, wallet=name, retry=NO_RETRY)
        except NodeUnreachable:
            # The RPC timed out, but the rescan goes on inside bitcoind with the descriptors imported.
            info = await self.rpc.call("getwalletinfo", wallet=name)
            if not info.get("scanning"):
                raise
            event(log, logging.INFO, "wallet_rescan_running", bitcoind_wallet=name)
            return
        for result in results:
            if not result.get("success"):
                raise RpcError(str(result.get("error", {}).get("message", result)), "importdescriptors")

    async def _rescan_from(self) -> int | str:
        """importdescriptors' timestamp: the block time of the birthday height, else the time exitd made
        the mnemonic (no coin can be older), else 0 (the whole chain)."""
        async with self.store.session() as session:
            stored_height = await get_meta(session, WALLET_BIRTHDAY_HEIGHT)
            created_at = await get_meta(session, WALLET_CREATED_AT)
        height = int(stored_height) if stored_height is not None else self.birthday_height
        if height is not None:
            if height > int(await self.rpc.call("getblockcount")):
                return "now"
            header = await self.rpc.call("getblockheader", await self.rpc.call("getblockhash", height))
            return int(header["time"])
        return int(created_at) if created_at is not None else 0

    async def _ensure_ready(self) -> None:
        if not self._ready:
            await self.setup()

    async def call(self, method: str, *params: Any) -> Any:
        """A call to bitcoind's wallet; one that was unloaded behind our back is loaded again."""
        await self._ensure_ready()
        try:
            return await self.rpc.call(method, *params, wallet=self.bitcoind_wallet)
        except RpcWalletNotFound:
            self._ready = False
            await self._ensure_ready()
            return await self.rpc.call(method, *params, wallet=self.bitcoind_wallet)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Wallet calls in one round trip, answered as BitcoinRpc.batch answers, reloading as call does."""
        await self._ensure_ready()
        answers = await self.rpc.batch(calls, wallet=self.bitcoind_wallet)
        if any(isinstance(a, RpcWalletNotFound) for a in answers):
            self._ready = False
            await self._ensure_ready()
            answers = await self.rpc.batch(calls, wallet=self.bitcoind_wallet)
        return answers
