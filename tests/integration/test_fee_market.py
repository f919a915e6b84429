"""The fee market's short version (bench/fee_market.py --quick): exitd exits a board, a shared tree and an
arkoor chain while a load of ordinary transactions fills every block, finishes before expiry, and claims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bitcoind

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fee_market.py"


def test_exits_finish_before_expiry_in_a_full_market(tmp_path: Path) -> None:
    figures = tmp_path / "fee_market.json"
    subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-plot", "--json", str(figures)],
        check=True,
        timeout=600,
        cwd=BENCH.parent,
    )
    (result,) = json.loads(figures.read_text())
    assert result["scenario"] == "steady"
    # A real market: the load filled the blocks, so a package had to outbid it to get in.
    assert result["full_blocks"] >= 0.8 * result["blocks"]
    exitd = result["policies"]["exitd"]
    assert exitd["exits"] == 4 and exitd["feasible"] == 4
    assert exitd["completed"] == exitd["exits"], exitd  # every one before its expiry
    assert exitd["fees_over_oracle"] <= 1.3, exitd
    # Its guard's auto-claims went out and confirmed on the same market, paying real fees.
    assert exitd["claims_confirmed"] == exitd["exits"] and exitd["claim_fees"] > 0, exitd
