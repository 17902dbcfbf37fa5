"""docs/PROTOCOL.md is a verbatim copy of the contract, so the docs' links work in any
checkout. The original lives beside the checkout (../shared/PROTOCOL.md) where the project
is developed; there the two must be equal."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPY = ROOT / "docs" / "PROTOCOL.md"
ORIGINAL = ROOT.parent / "shared" / "PROTOCOL.md"


@pytest.mark.skipif(not ORIGINAL.exists(), reason="no ../shared/PROTOCOL.md beside this checkout")
def test_the_copy_equals_the_contract() -> None:
    assert COPY.read_bytes() == ORIGINAL.read_bytes(), (
        "docs/PROTOCOL.md differs from ../shared/PROTOCOL.md: copy the contract again")


def test_every_link_to_the_contract_reaches_the_copy() -> None:
    for doc in (ROOT / "docs").rglob("*.md"):
        for target in re.findall(r"\]\(([^)#]*PROTOCOL\.md)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).resolve() == COPY, f"{doc}: {target}"
