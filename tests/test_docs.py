"""The README and docs/ stay readable and connected: relative links resolve (to a file, and an anchor to a heading of
that file by GitHub's slug rules), prose lines stay within 120 characters, the README stays short, its first block
still holds the two commands CI and users run, and no development history ("session 12", "trial AQ") creeps in.
Fast: reads Markdown only, runs nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_LINE = 120
MAX_README_WORDS = 4000

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HISTORY = re.compile(r"\bsessions?\s+\d+|\btrials?\s+[A-Z]{1,3}\b")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out, fence = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if not fence:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup removed, lowercase, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (a repeated heading gets -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link outside code, also of a link whose text wraps onto a new line."""
    lines = dict(prose_lines(path.read_text()))
    text = "\n".join(lines.get(n, "") for n in range(1, max(lines, default=0) + 1))
    text = re.sub(r"`[^`]*`", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)  # code spans hold no links
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in LINK.finditer(text)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", m.group(1))]  # not http:, https:, mailto:


def test_docs_exist():
    assert DOCS, "docs/*.md is missing"
    assert (REPO / "docs" / "glossary.md").is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path):
    broken = []
    for number, target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"line {number}: {target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"line {number}: {target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{page.name}:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_lines_at_most_120_characters(page: Path):
    """Code blocks are allowed longer lines (commands); prose and tables are not."""
    long = [f"line {n}: {len(line)} characters" for n, line in prose_lines(page.read_text()) if len(line) > MAX_LINE]
    assert not long, f"{page.name}:\n" + "\n".join(long)


def test_readme_is_short():
    words = len(README.read_text().split())
    assert words < MAX_README_WORDS, f"README.md has {words} words; move reference material to docs/"


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first_block = text.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


@pytest.mark.parametrize("page", [*PAGES, REPO / "config" / "README.md"], ids=lambda p: p.name)
def test_no_development_history(page: Path):
    found = [f"line {n}: {m.group(0)!r}" for n, line in enumerate(page.read_text().splitlines(), 1)
             for m in HISTORY.finditer(line)]
    assert not found, f"{page.name} holds development history:\n" + "\n".join(found)


def test_no_development_history_in_what_the_tool_prints():
    """The package's text that users read (string literals other than docstrings: report sentences, warnings,
    errors) cites no development history (a new user met "(trial AI: 46 of 47 flags ...)" in a report warning).
    Comments and docstrings may: they are for developers."""
    import ast

    found = []
    for path in sorted((REPO / "workflow" / "ms2study").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        found += [f"{path.relative_to(REPO)}:{node.lineno}: {m.group(0)!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                  for m in [HISTORY.search(node.value) or re.search(r"\bin a trial\b", node.value)] if m]
    assert not found, "development history in user-facing text:\n" + "\n".join(found)


def test_slug_rules():
    assert slug("What a change reruns") == "what-a-change-reruns"
    assert slug("Storey's pi0") == "storeys-pi0"
    assert slug("`identifications.parquet`") == "identificationsparquet"
    assert slug("Paired designs (before / after)") == "paired-designs-before--after"
    assert slug("Benjamini-Hochberg (BH)") == "benjamini-hochberg-bh"
