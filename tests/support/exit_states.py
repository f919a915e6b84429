"""One of every exit state and every exit-tx status, for the tests of their records and their JSON."""

from exitd.chain.view import BlockRef
from exitd.engine.states import (
    VERIFY_INPUTS,
    BlockOrigin,
    ExitState,
    ExitStateKind,
    ExitTx,
    ExitTxStatus,
    MempoolOrigin,
    TxStatusKind,
    WalletOrigin,
)

BLOCK = BlockRef(105, "ab" * 32)
TXID = "cd" * 32

TX_STATUSES = [
    VERIFY_INPUTS,
    ExitTxStatus(TxStatusKind.AWAITING_INPUT_CONFIRMATION, txids=(TXID,)),
    ExitTxStatus(TxStatusKind.NEEDS_SIGNED_PACKAGE),
    ExitTxStatus(TxStatusKind.NEEDS_REPLACEMENT_PACKAGE, min_fee_rate=2004, min_fee=700),
    ExitTxStatus(TxStatusKind.NEEDS_BROADCASTING, child_txid=TXID, origin=WalletOrigin()),
    ExitTxStatus(TxStatusKind.BROADCAST_WITH_CPFP, child_txid=TXID, origin=MempoolOrigin(3000, 900)),
    ExitTxStatus(TxStatusKind.CONFIRMED, child_txid=TXID, origin=WalletOrigin(BLOCK), block=BLOCK),
    ExitTxStatus(TxStatusKind.CONFIRMED, child_txid="", origin=BlockOrigin(BLOCK), block=BLOCK),
]

STATES = [
    ExitState(ExitStateKind.START, 100),
    ExitState(ExitStateKind.PROCESSING, 101, transactions=tuple(ExitTx(TXID, s) for s in TX_STATUSES)),
    ExitState(ExitStateKind.AWAITING_DELTA, 105, confirmed_block=BLOCK, claimable_height=111),
    ExitState(ExitStateKind.CLAIMABLE, 111, claimable_since=BLOCK),
    ExitState(ExitStateKind.CLAIMABLE, 112, claimable_since=BLOCK, last_scanned_block=BLOCK),
    ExitState(ExitStateKind.CLAIM_IN_PROGRESS, 112, claimable_since=BLOCK, claim_txid=TXID),
    ExitState(ExitStateKind.CLAIMED, 113, claimable_since=BLOCK, txid=TXID, block=BLOCK),
    # Claimable again with a claim exitd signed still watched (one dropped from the mempool may be mined).
    ExitState(
        ExitStateKind.CLAIMABLE, 114, claimable_since=BLOCK, last_scanned_block=BLOCK, signed_claims=(TXID,)
    ),
    ExitState(ExitStateKind.CANCELED, 114),
]
