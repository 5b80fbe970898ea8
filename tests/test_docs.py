"""The README stays short and every relative link in the prose resolves: a moved or renamed page, file or
heading is found here instead of by a reader who clicks it. Plain text parsing only: no heavy imports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 260
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# The commands CI (.ci/run) and people copy: they must stay as the README's first block.
COMMANDS = ("    make run    # fresh machine: creates .venv, installs, writes the demo corpus, runs the whole pipeline",
            "    make test   # fresh machine: creates .venv, installs dev extras, runs the test suite")

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are code, not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation other than '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    text = _prose(page.read_text(encoding="utf-8"))
    return _LINK.findall(text) + _DEFINITION.findall(text)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(page: Path) -> list[str]:
    """The page's relative links whose file, or heading in a Markdown file, does not exist."""
    broken = []
    for target in links(page):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # a web address: not this repository's to check
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no file {_shown(resolved)}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor} in {_shown(resolved)}")
    return broken


def test_the_readme_is_read_in_five_minutes():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (f"README.md has {len(lines)} lines, at most {MAX_README_LINES}: move "
                                            "reference text to a page under docs/ and link it")


def test_the_readme_starts_with_the_two_commands():
    head = README.read_text(encoding="utf-8").splitlines()[:20]
    for command in COMMANDS:
        assert command in head, f"the README's first lines must keep the command {command.strip()!r} as it is"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    assert page.exists()
    assert broken_links(page) == []


def test_the_link_check_can_fail(tmp_path: Path):
    """The checker itself: a missing file, a missing heading and GitHub's anchor rule."""
    (tmp_path / "other.md").write_text("# Run it on Kubeflow\n\n## What `make run` does, and leaves\n\n## A\n## A\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#run-it-on-kubeflow) [ok](other.md#what-make-run-does-and-leaves) "
                    "[ok](other.md#a-1) [ok](#here) ![ok](other.md) [web](https://example.com/x.md#nothing)\n"
                    "`[code](missing.md)`\n\n# Here\n\n[gone](missing.md) [bad](other.md#no-such-heading)\n")
    assert broken_links(page) == [f"missing.md: no file {tmp_path / 'missing.md'}",
                                  f"other.md#no-such-heading: no heading with anchor #no-such-heading in "
                                  f"{tmp_path / 'other.md'}"]
