"""Write exitd/api/contract/ from barkd's OpenAPI documents: their facts only, none of their prose.

    python contrib/extract_contract.py [DOCUMENTS_DIR]     (default: tests/vectors)

tests/unit/test_openapi.py fails when the packaged files differ from what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from exitd.api.openapi import CONTRACT_VERSIONS, render_contract

REPO = Path(__file__).resolve().parents[1]
PACKAGED = REPO / "exitd" / "api" / "contract"


def main(reference: Path) -> None:
    for version in CONTRACT_VERSIONS:
        name = f"barkd-openapi-{version}.json"
        document = json.loads((reference / name).read_text())
        (PACKAGED / name).write_text(render_contract(document))
        print(f"wrote {PACKAGED / name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "vectors")
