"""Typed errors of the on-chain wallet. Messages are shown to users as they are; none carries a secret."""

from __future__ import annotations


class NoWallet(Exception):
    """The datadir has no mnemonic yet: nothing that needs keys can be done."""

    def __init__(self) -> None:
        super().__init__(
            "no wallet yet: create one with POST /api/v1/wallet/create (or 'exitd init' before starting)"
        )


class WalletExists(Exception):
    """A wallet may be created once; exitd never replaces a mnemonic, since that would lose coins."""

    def __init__(self, fingerprint: str) -> None:
        super().__init__(f"a wallet already exists (fingerprint {fingerprint}); exitd never replaces it")
        self.fingerprint = fingerprint


class WalletDisabled(Exception):
    """bitcoind runs without wallet support, where exitd keeps its watch-only wallet."""

    def __init__(self) -> None:
        super().__init__(
            "bitcoind runs with wallets disabled (-disablewallet): exitd tracks its on-chain coins in a "
            "watch-only wallet inside bitcoind; restart bitcoind with disablewallet=0"
        )


class WalletMismatch(Exception):
    """The bitcoind wallet or this database belongs to another mnemonic than the datadir's."""


class InsufficientFunds(Exception):
    """The confirmed coins not promised to other transactions do not cover what is asked.

    `needed` is the total coin value the transaction would need (amounts, fee and any change floor),
    `available` what the usable confirmed coins hold.
    """

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(
            f"insufficient confirmed funds: {needed} sat needed, {available} sat available in confirmed "
            "coins not already committed to other transactions"
        )
        self.needed = needed
        self.available = available


class AmountBelowDust(ValueError):
    """An output below the dust threshold of its script would not be relayed."""

    def __init__(self, amount: int, dust: int) -> None:
        super().__init__(f"amount of {amount} sat is below the dust limit of {dust} sat for this address")
        self.amount = amount
        self.dust = dust
