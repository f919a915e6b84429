"""REGTEST ONLY: an Ark server stand-in that mints correctly signed bark VTXOs on a regtest chain.

The forge plays bark's server with keys the test holds. It funds and confirms the chain anchors (board
funding outputs, round txs) from the node's miner wallet and builds the genesis of each flow the way
bark fills it (../shared/reference/bark-vtxo-encoding.md, section 5):

* board: one Cosigned tx spending the user's funding output, MuSig(user, server);
* round tree: a radix tree of Cosigned node txs under one round tx output, one leaf tx per VTXO, so
  leaves share their ancestors; leaf txs are Cosigned, or hArk's HashLockedCosigned with the preimage;
* arkoor with checkpoints: after a board, each out-of-round payment is a checkpoint tx and an arkoor tx,
  both Arkoor transitions keyed by MuSig(sender, server) tweaked by the spent output's TapTweak.

No MuSig2 session is needed: the forge knows every secret, so it signs for an aggregate key with the
aggregate secret sum(a_i * sk_i) (BIP327 coefficients), tweaked exactly as BIP341 tweaks a key-path
key. What comes out passes exitd.ark.exit_tx.validate_vtxo and exits on chain like a bark VTXO.

Nothing here runs in the daemon; it serves the integration tests and `exitd demo`.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TypeVar

from bitcoin.core import (
    CMutableTransaction,
    COutPoint,
    CScript,
    CScriptWitness,
    CTransaction,
    CTxIn,
    CTxInWitness,
    CTxOut,
    CTxWitness,
    b2lx,
    lx,
)

from exitd.ark.claim import MIN_CLAIM_TX_VERSION, ClaimSigner, sign_claim_inputs
from exitd.ark.encoding import OutPoint, TxOut
from exitd.ark.exit_tx import EXIT_TX_VERSION, rebuild_exit_txs, validate_vtxo
from exitd.ark.hashes import sha256
from exitd.ark.key import SECP256K1_ORDER, pubkey_from_seckey, schnorr_sign, tweak_seckey_xonly
from exitd.ark.musig import key_agg_coefficients
from exitd.ark.policy import (
    PREIMAGE_LEN,
    CheckpointPolicy,
    HashLockVersion,
    PolicyType,
    PubkeyPolicy,
    ServerHtlcRecvPolicy,
    ServerHtlcSendPolicy,
    UserPolicy,
)
from exitd.ark.script import P2A_SCRIPT
from exitd.ark.transition import (
    ArkoorTransition,
    CosignedTransition,
    HashLockedCosignedTransition,
    Transition,
)
from exitd.ark.vtxo import GenesisItem, Vtxo, VtxoId
from exitd.ark.weight import tx_vsize
from exitd.chain.fees import SATS_PER_BTC, btc_to_sat
from exitd.regtest.node import MINER_WALLET, RegtestNode
from exitd.wallet.address import decode_address, script_to_address

NETWORK = "regtest"

# Short enough that a claim matures in a few regtest blocks; far enough that the server never sweeps
# an intermediate output while a test is still exiting.
DEFAULT_EXIT_DELTA = 6
DEFAULT_EXPIRY_BLOCKS = 1000
DEFAULT_HTLC_EXPIRY_BLOCKS = 20
DEFAULT_HTLC_EXPIRY_DELTA = 6

# What bark's v2 boards put in their P2A anchor; tree, checkpoint and arkoor txs carry a zero-value P2A
# (ephemeral dust, which the CPFP child must spend).
BOARD_FEE_AMOUNT = 330
ZERO_FEE_AMOUNT = 0

# bark's round trees are radix 4.
DEFAULT_TREE_ARITY = 4

DEFAULT_ARKOOR_HOPS = 2
DEFAULT_ARKOOR_CHANGE = 1_000

# sat/vB for a CPFP child's whole package: above any regtest relay floor, cheap for the miner wallet.
DEFAULT_CPFP_FEE_RATE = 2

# BIP340 allows any aux randomness; all zeros makes signatures deterministic, so a tx shared by several
# VTXOs (a tree node) gets the same witness in each of them, and their exits broadcast the same bytes.
DETERMINISTIC_AUX = bytes(32)

# Where a VTXO points before its anchor is funded and its chain signed.
UNFUNDED = OutPoint(bytes(32), 0)

T = TypeVar("T")


class ForgeError(Exception):
    """The forge cannot mint what was asked (a key it must sign with is unknown, a coin is missing)."""


def new_seckey() -> bytes:
    """A uniformly random secret key in [1, n-1]."""
    return (secrets.randbelow(SECP256K1_ORDER - 1) + 1).to_bytes(32, "big")


def aggregate_seckey(seckeys: Sequence[bytes]) -> bytes:
    """The secret key of KeyAgg(KeySort(pubkeys)): sum(a_i * sk_i) over the sorted keys.

    A MuSig2 session signs for that key without anyone learning it; whoever knows every share can
    simply compute it. The result is the secret of the full point Q, parity included.
    """
    by_pubkey = sorted((pubkey_from_seckey(sk), sk) for sk in seckeys)  # KeySort, secrets alongside
    coefficients = key_agg_coefficients([pk for pk, _ in by_pubkey])
    total = sum(a * int.from_bytes(sk, "big") for a, (_, sk) in zip(coefficients, by_pubkey, strict=True))
    return (total % SECP256K1_ORDER).to_bytes(32, "big")


def radix_groups(items: Sequence[T], arity: int) -> list[Sequence[T]]:
    """Up to `arity` contiguous groups of near-equal size, the larger ones first: a node's children."""
    count = min(arity, len(items))
    size, larger = divmod(len(items), count)
    groups: list[Sequence[T]] = []
    start = 0
    for i in range(count):
        end = start + size + (i < larger)
        groups.append(items[start:end])
        start = end
    return groups


def sat_to_btc(sats: int) -> Decimal:
    return Decimal(sats) / SATS_PER_BTC


@dataclass(frozen=True)
class UserKey:
    """A VTXO owner's key. The secret is needed where the user cosigns (a board, an arkoor payment it
    sends, an hArk leaf) and to claim; a VTXO can be minted to a bare pubkey otherwise."""

    pubkey: bytes
    secret: bytes | None = None

    @classmethod
    def from_secret(cls, secret: bytes) -> UserKey:
        return cls(pubkey_from_seckey(secret), secret)

    @classmethod
    def generate(cls) -> UserKey:
        return cls.from_secret(new_seckey())


@dataclass(frozen=True)
class LeafSpec:
    """One VTXO of a round tree: its amount, owner (None: a fresh key) and final policy type."""

    amount: int
    user: UserKey | None = None
    policy_type: PolicyType = PolicyType.PUBKEY


@dataclass(frozen=True)
class ForgedVtxo:
    """A minted VTXO with what a test needs to claim it: the owner's key (and secret, if known) and an
    HTLC's payment preimage."""

    vtxo: Vtxo
    user: UserKey
    payment_preimage: bytes | None = None

    @property
    def id(self) -> VtxoId:
        return self.vtxo.id

    @property
    def hex(self) -> str:
        """bark's encoding, as REST imports take it."""
        return self.vtxo.encode().hex()

    @property
    def payment_hash(self) -> bytes | None:
        return None if self.payment_preimage is None else sha256(self.payment_preimage)


@dataclass(frozen=True)
class _TreeLeaf:
    """A round participant: the VTXO it gets, its cosign key, and how its leaf tx spends the node output."""

    user: UserKey
    policy: UserPolicy
    payment_preimage: bytes | None
    amount: int
    cosign_pubkey: bytes
    transition: Transition


@dataclass(frozen=True)
class _Subtree:
    """A tree node or leaf: the transition spending its input, the input's value, the cosign keys of its
    leaves, and each leaf's genesis items from here down."""

    transition: Transition
    value: int
    cosign_pubkeys: tuple[bytes, ...]
    paths: tuple[tuple[GenesisItem, ...], ...]


class Forge:
    """The Ark server of a regtest chain. It remembers every secret it generated or was given, and
    signs any genesis whose keys it holds."""

    def __init__(self, node: RegtestNode, server_secret: bytes | None = None) -> None:
        self.node = node
        self.server = UserKey.from_secret(server_secret or new_seckey())
        self._seckeys: dict[bytes, bytes] = {}
        self._remember(self.server)

    @property
    def server_pubkey(self) -> bytes:
        return self.server.pubkey

    # -- VTXO flows ------------------------------------------------------------------------------

    def board(
        self,
        amount: int,
        user: UserKey | None = None,
        *,
        fee_amount: int = BOARD_FEE_AMOUNT,
        expiry_height: int | None = None,
        exit_delta: int = DEFAULT_EXIT_DELTA,
    ) -> ForgedVtxo:
        """A boarded VTXO (depth 1): the user's funding output, locked to MuSig(user, server) with the
        server's sweep after expiry, spent by one Cosigned exit tx. The user cosigns, so its secret is
        needed."""
        user = self._remember(user or UserKey.generate())
        genesis = [self._board_item(user, fee_amount)]
        policy = PubkeyPolicy(user.pubkey)
        unsigned = self._unsigned(amount, genesis, policy, self._expiry(expiry_height), exit_delta)
        (vtxo,) = self._fund_and_sign([unsigned])
        return ForgedVtxo(vtxo, user)

    def tree(
        self,
        leaves: Sequence[LeafSpec],
        *,
        arity: int = DEFAULT_TREE_ARITY,
        hark: bool = False,
        expiry_height: int | None = None,
        exit_delta: int = DEFAULT_EXIT_DELTA,
    ) -> list[ForgedVtxo]:
        """The VTXOs of one round, in the order of `leaves`: a radix-`arity` tree of Cosigned node txs
        under the round tx's output, each node keyed by the cosign keys of the leaves below it and the
        server. Each leaf tx spends its node output with a fresh cosign key (Cosigned), or with hArk
        (`hark`: HashLockedCosigned v1 by MuSig(user, server) and the unlock preimage, so the owner's
        secret is needed).

        A leaf below 330 sat is a sub-dust output of its node tx and of its own leaf tx: Bitcoin Core
        relays at most one dust output per tx, and only when the CPFP child spends it, so those txs
        cannot be broadcast. bark isolates such outputs; a test mints them to face that case.
        """
        if arity < 2 or not leaves:
            raise ValueError("a tree needs leaves and an arity of at least 2")
        expiry = self._expiry(expiry_height)
        params = (self.server_pubkey, exit_delta, expiry)
        tree_leaves = [self._tree_leaf(spec, hark) for spec in leaves]
        root = self._subtree(tree_leaves, arity, params)
        unsigned = [
            self._unsigned(leaf.amount, path, leaf.policy, expiry, exit_delta)
            for leaf, path in zip(tree_leaves, root.paths, strict=True)
        ]
        return [
            ForgedVtxo(vtxo, leaf.user, leaf.payment_preimage)
            for vtxo, leaf in zip(self._fund_and_sign(unsigned), tree_leaves, strict=True)
        ]

    def arkoor_chain(
        self,
        amount: int,
        receiver: UserKey | None = None,
        *,
        policy_type: PolicyType = PolicyType.PUBKEY,
        hops: int = DEFAULT_ARKOOR_HOPS,
        change: int = DEFAULT_ARKOOR_CHANGE,
        expiry_height: int | None = None,
        exit_delta: int = DEFAULT_EXIT_DELTA,
    ) -> ForgedVtxo:
        """A VTXO paid out of round `hops` times after a board (depth 1 + 2 * hops), the way bark's
        `new_with_checkpoint` does it. Each hop is a checkpoint tx, whose outputs (`amount` onward and
        `change` back) carry the sender's Checkpoint policy, and an arkoor tx turning the first one into
        the next owner's VTXO. The last owner is `receiver` (may be a bare pubkey); the senders are
        fresh keys the forge signs for."""
        if hops < 1:
            raise ValueError("an arkoor chain has at least one hop; board() mints the bare board")
        expiry = self._expiry(expiry_height)
        params = (self.server_pubkey, exit_delta, expiry)
        receiver = self._remember(receiver or UserKey.generate())
        senders = [self._remember(UserKey.generate()) for _ in range(hops)]
        genesis = [self._board_item(senders[0], BOARD_FEE_AMOUNT)]
        for sender in senders:
            spent = PubkeyPolicy(sender.pubkey)
            checkpoint = CheckpointPolicy(sender.pubkey)
            change_output = TxOut(change, checkpoint.script_pubkey(*params))
            cosigners = (sender.pubkey,)
            to_checkpoint = ArkoorTransition(cosigners, spent.taproot(*params).tweak, None)
            to_receiver = ArkoorTransition(cosigners, checkpoint.taproot(*params).tweak, None)
            genesis += [
                GenesisItem(to_checkpoint, 0, (change_output,), ZERO_FEE_AMOUNT),
                GenesisItem(to_receiver, 0, (), ZERO_FEE_AMOUNT),
            ]
        policy, preimage = self._user_policy(policy_type, receiver)
        (vtxo,) = self._fund_and_sign([self._unsigned(amount, genesis, policy, expiry, exit_delta)])
        return ForgedVtxo(vtxo, receiver, preimage)

    # -- signing ---------------------------------------------------------------------------------

    def sign(self, vtxo: Vtxo) -> Vtxo:
        """Sign every exit tx of `vtxo` with the secrets the forge holds and point it at the end of its
        chain, whatever its point was. The result has passed validate_vtxo."""
        params = (vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
        _, txs = rebuild_exit_txs(vtxo)
        genesis = []
        for exit_tx in txs:
            transition = exit_tx.item.transition
            msg, _ = transition.sighash_and_key(exit_tx.tx, exit_tx.prevout, *params)
            genesis.append(replace(exit_tx.item, transition=self._signed(transition, msg, vtxo)))
        signed = replace(vtxo, genesis=tuple(genesis), point=txs[-1].outpoint)
        return validate_vtxo(signed.encode())[0]

    def _signed(self, transition: Transition, msg: bytes, vtxo: Vtxo) -> Transition:
        """The transition with its signature: key path of the tweaked aggregate key for Cosigned and
        Arkoor, script path of the untweaked MuSig(user, server) for hArk's unlock leaf."""
        server = vtxo.server_pubkey
        match transition:
            case CosignedTransition():
                tweak = transition.input_taproot(server, vtxo.expiry_height).tweak
                secret = tweak_seckey_xonly(self._aggregate_secret(transition.pubkeys), tweak)
                return replace(transition, signature=self._schnorr(secret, msg))
            case ArkoorTransition():
                aggregate = self._aggregate_secret([*transition.client_cosigners, server])
                secret = tweak_seckey_xonly(aggregate, transition.tap_tweak)
                return replace(transition, signature=self._schnorr(secret, msg))
            case HashLockedCosignedTransition():
                secret = self._aggregate_secret([transition.user_pubkey, server])
                return replace(transition, signature=self._schnorr(secret, msg))
        raise ForgeError(f"the forge cannot sign {transition.kind} transitions")

    @staticmethod
    def _schnorr(secret: bytes, msg: bytes) -> bytes:
        return schnorr_sign(secret, msg, DETERMINISTIC_AUX)

    def _aggregate_secret(self, pubkeys: Sequence[bytes]) -> bytes:
        unknown = [pk.hex() for pk in pubkeys if pk not in self._seckeys]
        if unknown:
            raise ForgeError(f"the forge does not hold the secret keys of {', '.join(unknown)}")
        return aggregate_seckey([self._seckeys[pk] for pk in pubkeys])

    def _remember(self, user: UserKey) -> UserKey:
        if user.secret is not None:
            self._seckeys[user.pubkey] = user.secret
        return user

    # -- building blocks -------------------------------------------------------------------------

    def _expiry(self, expiry_height: int | None) -> int:
        return self.node.height() + DEFAULT_EXPIRY_BLOCKS if expiry_height is None else expiry_height

    def _unsigned(
        self,
        amount: int,
        genesis: Sequence[GenesisItem],
        policy: UserPolicy,
        expiry_height: int,
        exit_delta: int,
    ) -> Vtxo:
        return Vtxo(
            amount, expiry_height, self.server_pubkey, exit_delta, UNFUNDED, tuple(genesis), policy, UNFUNDED
        )

    def _fund_and_sign(self, unsigned: Sequence[Vtxo]) -> list[Vtxo]:
        """Fund and confirm the chain anchor these VTXOs share, then sign each from it."""
        chain_anchor, _ = rebuild_exit_txs(unsigned[0])
        anchor = self.fund_anchor(chain_anchor)
        return [self.sign(replace(vtxo, anchor_point=anchor)) for vtxo in unsigned]

    def _board_item(self, user: UserKey, fee_amount: int) -> GenesisItem:
        """The exit tx of a board: the funding output's key path, MuSig(user, server)."""
        return GenesisItem(CosignedTransition((user.pubkey, self.server_pubkey), None), 0, (), fee_amount)

    def _user_policy(self, policy_type: PolicyType, user: UserKey) -> tuple[UserPolicy, bytes | None]:
        """The final policy of a VTXO, and the payment preimage of an HTLC (the forge is the payee or
        the Lightning side, so it knows it)."""
        if policy_type is PolicyType.PUBKEY:
            return PubkeyPolicy(user.pubkey), None
        preimage = secrets.token_bytes(PREIMAGE_LEN)
        htlc_expiry = self.node.height() + DEFAULT_HTLC_EXPIRY_BLOCKS
        if policy_type is PolicyType.SERVER_HTLC_SEND:
            return ServerHtlcSendPolicy(user.pubkey, sha256(preimage), htlc_expiry), preimage
        if policy_type is PolicyType.SERVER_HTLC_RECV:
            recv = ServerHtlcRecvPolicy(user.pubkey, sha256(preimage), htlc_expiry, DEFAULT_HTLC_EXPIRY_DELTA)
            return recv, preimage
        raise ValueError(f"the forge mints pubkey and v1 HTLC VTXOs, not {policy_type.kind}")

    def _tree_leaf(self, spec: LeafSpec, hark: bool) -> _TreeLeaf:
        user = self._remember(spec.user or UserKey.generate())
        policy, preimage = self._user_policy(spec.policy_type, user)
        cosign = self._remember(UserKey.generate())
        transition: Transition
        if hark:
            unlock = secrets.token_bytes(PREIMAGE_LEN)
            transition = HashLockedCosignedTransition(
                user.pubkey, None, sha256(unlock), unlock, HashLockVersion.V1
            )
        else:
            transition = CosignedTransition((cosign.pubkey, self.server_pubkey), None)
        return _TreeLeaf(user, policy, preimage, spec.amount, cosign.pubkey, transition)

    def _subtree(self, leaves: Sequence[_TreeLeaf], arity: int, params: tuple[bytes, int, int]) -> _Subtree:
        if len(leaves) == 1:
            leaf = leaves[0]
            item = GenesisItem(leaf.transition, 0, (), ZERO_FEE_AMOUNT)
            return _Subtree(leaf.transition, leaf.amount, (leaf.cosign_pubkey,), ((item,),))
        children = [self._subtree(group, arity, params) for group in radix_groups(leaves, arity)]
        cosign_pubkeys = tuple(pk for child in children for pk in child.cosign_pubkeys)
        node = CosignedTransition((*cosign_pubkeys, self.server_pubkey), None)
        outputs = [TxOut(child.value, child.transition.input_script_pubkey(*params)) for child in children]
        paths = tuple(
            (GenesisItem(node, idx, (*outputs[:idx], *outputs[idx + 1 :]), ZERO_FEE_AMOUNT), *path)
            for idx, child in enumerate(children)
            for path in child.paths
        )
        return _Subtree(node, sum(child.value for child in children), cosign_pubkeys, paths)

    # -- the chain -------------------------------------------------------------------------------

    def fund_anchor(self, txout: TxOut) -> OutPoint:
        """Pay `txout` from the miner wallet and confirm it: a board's funding output or a round tx."""
        txid = self.node.send(script_to_address(txout.script_pubkey, NETWORK), sat_to_btc(txout.value))
        outputs = self.node.rpc("getrawtransaction", txid, True)["vout"]
        vout = next(
            out["n"]
            for out in outputs
            if out["scriptPubKey"]["hex"] == txout.script_pubkey.hex()
            and btc_to_sat(out["value"]) == txout.value
        )
        self.node.mine(1)
        return OutPoint(lx(txid), vout)

    def competing_spend(self, forged: ForgedVtxo, address: str, fee: int = 1_000) -> CTransaction:
        """A tx spending the VTXO's chain anchor (a board's funding output, a round's tree root) to
        `address` with the keys the forge holds, as the server and the user together may: a conflict for
        the VTXO's exit, whose first tx spends the same output."""
        vtxo = forged.vtxo
        chain_anchor, txs = rebuild_exit_txs(vtxo)
        first = txs[0]
        transition = first.item.transition
        tx = CMutableTransaction(
            [CTxIn(COutPoint(vtxo.anchor_point.txid, vtxo.anchor_point.vout))],
            [CTxOut(chain_anchor.value - fee, CScript(decode_address(address, NETWORK)))],
            nVersion=2,
        )
        params = (vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
        msg, _ = transition.sighash_and_key(CTransaction.from_tx(tx), first.prevout, *params)
        signed = self._signed(transition, msg, vtxo)
        tx.wit = CTxWitness([CTxInWitness(CScriptWitness(signed.witness(*params)))])
        return CTransaction.from_tx(tx)

    def server_refund(self, forged: ForgedVtxo, address: str, fee: int = 1_000) -> CTransaction:
        """The server taking an HTLC receive back: a tx spending the VTXO's own output (its exit's last)
        to `address` through the server's refund leaf, with the locktime (htlc_expiry) and sequence
        (exit_delta) that leaf wants. It is valid in the first block after htlc_expiry that is at least
        exit_delta blocks after the output confirmed, and races the user's claim until then."""
        vtxo = forged.vtxo
        if not isinstance(vtxo.policy, ServerHtlcRecvPolicy):
            raise ForgeError(f"VTXO {vtxo.id} has a {vtxo.policy.kind} policy: the server has no refund leaf")
        clause = vtxo.policy.refund_clause(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
        tx = CMutableTransaction(
            [CTxIn(COutPoint(vtxo.point.txid, vtxo.point.vout))],
            [CTxOut(vtxo.amount - fee, CScript(decode_address(address, NETWORK)))],
            nLockTime=vtxo.policy.htlc_expiry,
            nVersion=MIN_CLAIM_TX_VERSION,
        )
        assert self.server.secret is not None  # the forge made the server's key
        signer = ClaimSigner(clause, self.server.secret)
        sign_claim_inputs(tx, [(vtxo.amount, clause.script_pubkey)], {0: signer})
        return CTransaction.from_tx(tx)

    def cpfp_child(self, parent: CTransaction, fee_rate: int = DEFAULT_CPFP_FEE_RATE) -> CTransaction:
        """A TRUC child of an exit tx: it spends the parent's P2A (last output, empty witness) and a
        confirmed miner-wallet coin, and pays `fee_rate` sat/vB for parent and child together, so that
        `submitpackage([parent, child])` takes the zero-fee parent in.

        Test and demo plumbing on the node's miner wallet, apart from exitd's own wallet.
        """
        coin, coin_value = self._lock_confirmed_coin()
        anchor = TxOut(parent.vout[-1].nValue, bytes(parent.vout[-1].scriptPubKey))
        if anchor.script_pubkey != P2A_SCRIPT:
            raise ForgeError("the parent's last output is not a P2A anchor")
        change_spk = decode_address(self.node.miner_address(), NETWORK)
        value_in = anchor.value + coin_value
        inputs = [
            CTxIn(COutPoint(parent.GetTxid(), len(parent.vout) - 1)),
            CTxIn(COutPoint(coin.txid, coin.vout)),
        ]
        anchor_prevtx = {
            "txid": b2lx(parent.GetTxid()),
            "vout": len(parent.vout) - 1,
            "scriptPubKey": P2A_SCRIPT.hex(),
            "amount": sat_to_btc(anchor.value),
        }

        def signed_child(fee: int) -> CTransaction:
            unsigned = CTransaction(
                inputs, [CTxOut(value_in - fee, CScript(change_spk))], nVersion=EXIT_TX_VERSION
            )
            answer = self.node.rpc(
                "signrawtransactionwithwallet",
                unsigned.serialize().hex(),
                [anchor_prevtx],
                wallet=MINER_WALLET,
            )
            if not answer["complete"]:
                raise ForgeError(f"the miner wallet could not sign the CPFP child: {answer.get('errors')}")
            return CTransaction.deserialize(bytes.fromhex(answer["hex"]))

        # The child's size does not depend on its fee, so a first signing measures it.
        package_vsize = tx_vsize(parent) + tx_vsize(signed_child(0))
        return signed_child(math.ceil(fee_rate * package_vsize))

    def _lock_confirmed_coin(self) -> tuple[OutPoint, int]:
        """The miner wallet's largest confirmed coin and its value, locked so that no other child picks
        it before this one is broadcast (TRUC children may not spend unconfirmed coins of their own)."""
        coins = self.node.rpc("listunspent", 1, wallet=MINER_WALLET)
        if not coins:
            raise ForgeError("the miner wallet has no confirmed coin to pay a CPFP child")
        coin = max(coins, key=lambda c: Decimal(c["amount"]))
        self.node.rpc(
            "lockunspent", False, [{"txid": coin["txid"], "vout": coin["vout"]}], wallet=MINER_WALLET
        )
        return OutPoint(lx(coin["txid"]), coin["vout"]), btc_to_sat(coin["amount"])
