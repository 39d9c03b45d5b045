"""The README and the docs link only inside the repository, to files that exist (a clone has
nothing beside it), and docs/architecture.md's layout table follows the README's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").rglob("*.md"),
        *(ROOT / "deploy").rglob("README.md"),
        *(ROOT / "connectors").rglob("README.md"),
    ]
)

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), target up to a space (an optional "title" may follow)
_LINK = re.compile(r"!?\[(?:[^\]\n]|\][^(])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""")


def links(page: Path) -> list[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    # a link's text may be code (`[`docs/x.md`](docs/x.md)`); only bare code spans are dropped
    text = _CODE.sub(lambda m: m.group(0) if "](" in text[m.end() : m.end() + 2] else "", text)
    return _LINK.findall(text) + _HTML.findall(text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        out.add(slug)
    return out


def problems(page: Path, root: Path = ROOT) -> list[str]:
    found = []
    for target in links(page):
        where = f"{page.relative_to(root)}: {target}"
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            found.append(f"{where}: leaves the repository (link a file of the repository instead)")
            continue
        path, _, fragment = target.partition("#")
        if path.startswith("/"):
            found.append(f"{where}: absolute path; write it relative to the page")
            continue
        resolved = (page.parent / path).resolve() if path else page
        if resolved != root and root not in resolved.parents:
            found.append(f"{where}: points outside the repository (a clone has nothing beside it)")
        elif not resolved.exists():
            found.append(f"{where}: no such file or folder")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            found.append(f"{where}: no heading #{fragment} in {resolved.relative_to(root)}")
    return found


def test_the_pages_checked_include_the_readme_and_the_architecture_page() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    assert {"README.md", "docs/architecture.md", "docs/storage.md"} <= names


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_stay_in_the_repository_and_exist(page: Path) -> None:
    assert problems(page) == []


def test_the_readme_links_the_architecture_page() -> None:
    assert "docs/architecture.md" in links(ROOT / "README.md")


def test_the_checker_refuses_what_a_clone_cannot_follow(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("# Top\n")
    (root / "docs" / "storage.md").write_text("# Storage\n\n## Migrating `metrics_hot`\n")
    page = root / "docs" / "page.md"
    page.write_text(
        "[design](../../shared/DESIGN.md) [site](https://example.com/x) [abs](/etc/passwd)"
        " [gone](missing.md) [ok](storage.md#migrating-metrics_hot) [anchor](storage.md#no-such-heading)"
        ' <img src="../README.md"> `[code](nowhere.md)`\n```\n[fenced](nowhere.md)\n```\n'
    )
    assert [g.split(": ", 2)[1] for g in problems(page, root.resolve())] == [
        "../../shared/DESIGN.md",
        "https://example.com/x",
        "/etc/passwd",
        "missing.md",
        "storage.md#no-such-heading",
    ]


def _layout_paths(page: Path, heading: str) -> list[str]:
    text = page.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*(\S.*?)\s*\|", section, re.M)
    return [m.group(1) for r in rows if (m := re.search(r"`([^`]+)`", r))]


def test_the_architecture_table_has_every_path_of_the_readme_layout() -> None:
    readme = _layout_paths(ROOT / "README.md", "## Layout")
    page = _layout_paths(ROOT / "docs" / "architecture.md", "## Where each subsystem lives")
    assert len(readme) > 10
    assert [p for p in readme if p not in page] == []
    assert [p for p in page if not (ROOT / p).exists()] == []
