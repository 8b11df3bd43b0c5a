"""The repository explains itself: it cites only documents it contains (docs/README.md).

Every file outside .git, .venv and caches is scanned for citations of the input documents the
project was started from (they are not part of it), and every `docs/<page>.md#anchor`,
`docs/design.md invariant N` and link between the docs pages must name a heading that exists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

THIS_FILE = Path(__file__).resolve()
ROOT = THIS_FILE.parents[2]
DOCS = ROOT / "docs"
SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".hypothesis",
        ".run",
        "build",
        "dist",
        "node_modules",
    }
)
MAX_FILE_BYTES = 2_000_000

# Spelled in pieces so that this file does not cite them itself.
FOREIGN = re.compile(
    "|".join(
        (
            "SPEC" + r" ?\u00a7",
            "SPEC" + r"\.md",
            "DESIGN" + r" invariant",
            "DESIGN" + r"\.md",
            "META" + "_API",
            r"\.\./" + "shared",
            "/work/" + "shared",
        )
    )
)
CITATION = re.compile(r"(?<![\w./-])docs/([\w-]+\.md)(?:#([\w-]+))?")
INVARIANT = re.compile(r"(?<![\w./-])docs/design\.md,? invariants? (\d+)")
LOCAL_LINK = re.compile(r"\]\(((?:[\w-]+\.md)?)(?:#([\w-]+))?\)")  # [text](page.md#anchor)
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
NUMBERED = re.compile(r"^(\d+)\.\s")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(markdown: str) -> list[tuple[int, str]]:
    """(level, text) of every heading outside fenced code blocks."""
    found: list[tuple[int, str]] = []
    fenced = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2)))
    return found


def anchors(markdown: str) -> set[str]:
    """Anchors as GitHub renders them, repeated headings numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _level, text in headings(markdown):
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def invariant_numbers(markdown: str) -> set[int]:
    """Numbers of the `N. ...` headings under the `Invariants` heading."""
    numbers: set[int] = set()
    inside_level: int | None = None
    for level, text in headings(markdown):
        if inside_level is not None and level <= inside_level:
            inside_level = None
        if slug(text) == "invariants":
            inside_level = level
        elif inside_level is not None and (match := NUMBERED.match(text)):
            numbers.add(int(match.group(1)))
    return numbers


def repository_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(names):
            path = Path(directory, name)
            if not path.is_symlink() and path.stat().st_size <= MAX_FILE_BYTES:
                files.append(path)
    return files


def problems(root: Path) -> list[str]:
    """Every foreign citation and every citation of a missing docs page, anchor or invariant.
    This file's own examples of bad citations (below) are not citations."""
    docs = root / "docs"
    pages = {p.name: p.read_text(encoding="utf-8") for p in sorted(docs.glob("*.md"))}
    page_anchors = {name: anchors(text) for name, text in pages.items()}
    invariants = invariant_numbers(pages.get("design.md", ""))
    found: list[str] = []
    for path in repository_files(root):
        if path == THIS_FILE:
            continue
        text = path.read_bytes().decode("utf-8", "ignore")
        where = path.relative_to(root).as_posix()
        for number, line in enumerate(text.splitlines(), 1):
            at = f"{where}:{number}"
            for match in FOREIGN.finditer(line):
                found.append(f"{at}: cites {match.group(0)!r}, which is not in the repository")
            for page, anchor in CITATION.findall(line):
                if page not in pages:
                    found.append(f"{at}: docs/{page} does not exist")
                elif anchor and anchor not in page_anchors[page]:
                    found.append(f"{at}: docs/{page} has no heading #{anchor}")
            for invariant in INVARIANT.findall(line):
                if int(invariant) not in invariants:
                    found.append(f"{at}: docs/design.md has no invariant {invariant}")
            if path.parent == docs and path.suffix == ".md":
                for page, anchor in LOCAL_LINK.findall(line):
                    target = page or path.name
                    if page and target not in pages:
                        found.append(f"{at}: links to {target}, which is not in docs/")
                    elif anchor and anchor not in page_anchors.get(target, set()):
                        found.append(f"{at}: {target} has no heading #{anchor}")
    return found


def test_the_repository_cites_only_documents_it_contains() -> None:
    assert problems(ROOT) == []


def test_the_four_pages_and_their_numbered_invariants_exist() -> None:
    assert {"README.md", "design.md", "dialects.md", "meta-api.md", "operations.md"} <= {
        p.name for p in DOCS.glob("*.md")
    }
    assert invariant_numbers((DOCS / "design.md").read_text(encoding="utf-8")) == {1, 2, 3, 4, 5, 6}


# --- the checker itself catches what it must -------------------------------------------------


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "docs/design.md",
        "# Design\n\n## Invariants\n\n### 1. No loss\n\n"
        "### 2. Determinism\n\n## Commits\n\n```\n# not a heading\n```\n",
    )
    write(
        tmp_path,
        "docs/dialects.md",
        "# Dialects\n\n## segment\n\n## Output\n\n## Output\n\n"
        "See [design](design.md#commits) and [above](#segment).\n",
    )
    write(
        tmp_path,
        "consumer/ok.py",
        '"""Fine (docs/design.md invariant 2, docs/dialects.md#segment,\n'
        'docs/dialects.md#output-1, docs/design.md#1-no-loss, docs/design.md)."""\n',
    )
    return tmp_path


def test_a_clean_tree_has_no_problems(repo: Path) -> None:
    assert problems(repo) == []


@pytest.mark.parametrize(
    "citation",
    [
        "SPEC" + " \u00a74",
        "SPEC" + "\u00a76",
        "see SPEC" + ".md",
        "DESIGN" + " invariant 1",
        "META" + "_API.md",
        "../" + "shared/seeds",
        "/work/" + "shared/x",
    ],
)
def test_a_citation_of_a_foreign_document_is_reported(repo: Path, citation: str) -> None:
    write(repo, "tests/test_x.py", f"# as {citation} says\n")
    found = problems(repo)
    assert len(found) == 1
    assert found[0].startswith("tests/test_x.py:1: cites ")
    assert found[0].endswith(", which is not in the repository")


@pytest.mark.parametrize(
    ("citation", "problem"),
    [
        ("docs/dialects.md#amperity", "docs/dialects.md has no heading #amperity"),
        ("docs/design.md#not-a-heading", "docs/design.md has no heading #not-a-heading"),
        ("docs/runbook.md", "docs/runbook.md does not exist"),
        ("docs/design.md invariant 3", "docs/design.md has no invariant 3"),
    ],
)
def test_a_citation_of_a_missing_page_anchor_or_invariant_is_reported(
    repo: Path, citation: str, problem: str
) -> None:
    write(repo, "README.md", f"intro\n\nsee {citation} for why\n")
    assert problems(repo) == [f"README.md:3: {problem}"]


def test_a_broken_link_between_docs_pages_is_reported(repo: Path) -> None:
    write(repo, "docs/meta-api.md", "# Meta\n\n[a](design.md#nope) [b](#meta) [c](gone.md)\n")
    assert problems(repo) == [
        "docs/meta-api.md:3: design.md has no heading #nope",
        "docs/meta-api.md:3: links to gone.md, which is not in docs/",
    ]


def test_skipped_directories_are_not_scanned(repo: Path) -> None:
    write(repo, ".venv/lib/x.py", "# SPEC" + " \u00a74\n")
    write(repo, ".git/COMMIT_EDITMSG", "DESIGN" + " invariant 9\n")
    assert problems(repo) == []


def test_slugs_follow_github() -> None:
    assert slug("1. No loss") == "1-no-loss"
    assert slug("User data and hashing") == "user-data-and-hashing"
    assert slug("`fboc dlq` replay") == "fboc-dlq-replay"
    assert slug("Segment / RudderStack") == "segment--rudderstack"
