"""Every relative link in README.md and docs/ reaches a file of this checkout, and every
`#anchor` a heading of its page (GitHub's slugs), so the docs work in any clone."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)


def _text(doc: Path) -> str:
    """The page without its code blocks (their brackets are code, not links)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), doc.read_text(encoding="utf-8"))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, links and punctuation dropped, spaces as -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(_text(doc)):
        s = slug(heading)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def test_slugs_are_githubs() -> None:
    assert slug("5. Several processes on one machine: `--workers`") == (
        "5-several-processes-on-one-machine---workers")
    assert slug("Decisions (ADRs)") == "decisions-adrs"


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for doc in DOCS:
        for lineno, line in enumerate(_text(doc).splitlines(), 1):
            for link in LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:, ...
                    continue
                path, _, anchor = link.partition("#")
                target = (doc.parent / path).resolve() if path else doc
                where = f"{doc.relative_to(ROOT)}:{lineno}: {link}"
                if not target.is_relative_to(ROOT) or not target.exists():
                    broken.append(f"{where} (no such file in this checkout)")
                elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                    broken.append(f"{where} (no such heading)")
    assert not broken, "broken links:\n  " + "\n  ".join(broken)
