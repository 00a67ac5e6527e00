"""The documentation is true: its links, its section references and its commands.

- every ``#anchor`` link and every ``README, 'Section'`` reference (in the package's messages and
  in the markdown files) names a heading that exists, by GitHub's anchor rules;
- every relative file link of the markdown files exists;
- every ``rna-localization <command>`` they show is a real command whose flags exist, and the
  concrete ones parse with the real parser.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from rna_localization.cli import build_parser

from helpers import subcommands as _subcommands

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKDOWN = [README, ROOT / "data" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = sorted((ROOT / "rna_localization").rglob("*.py")) + sorted(
    (ROOT / "batch-processing-scripts").glob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------ headings and anchors
def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, markup and punctuation dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file (duplicates get GitHub's -1, -2 suffixes)."""
    seen: dict[str, int] = {}
    result = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", _without_code_blocks(path.read_text()),
                             flags=re.MULTILINE):
        anchor = github_anchor(match.group(1))
        n = seen.get(anchor, 0)
        seen[anchor] = n + 1
        result.add(anchor if n == 0 else f"{anchor}-{n}")
    return result


def test_github_anchor_rules():
    assert github_anchor("The demo report: what each figure is compared with") == (
        "the-demo-report-what-each-figure-is-compared-with")
    assert github_anchor("pipeline.toml") == "pipelinetoml"
    assert github_anchor("4. Review the QC page") == "4-review-the-qc-page"
    assert github_anchor("What `pipeline.ipynb` shows, section by section") == (
        "what-pipelineipynb-shows-section-by-section")
    assert "the-database" in anchors(README)
    assert "config-file" not in anchors(README)


def _links(path: Path) -> list[str]:
    """The targets of the markdown links of a file, code blocks and code spans left out."""
    text = re.sub(r"`[^`\n]*`", "", _without_code_blocks(path.read_text()))
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", MARKDOWN, ids=_rel)
def test_links_point_to_files_and_headings_that_exist(path):
    checked = 0
    for link in _links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:: not ours to check
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{_rel(path)} links to {target}, which is not in the repository"
        if anchor:
            assert file.suffix == ".md", link
            assert anchor in anchors(file), (
                f"{_rel(path)} links to #{anchor}, which is no heading of {_rel(file)}")
        checked += 1
    if path == README:
        assert checked >= 5  # the parser finds the README's links


# "README, 'Section'", 'README "Section"', "README ('Section')", "the README, "Section"".
SECTION_REFERENCE = re.compile(r"""README(?:\.md)?\)?,?\s*\(?\s*(?:section\s+)?['"“]([^'"”\n]+)['"”]""")


def _section_references() -> list[tuple[str, str]]:
    references = []
    for path in SOURCES + MARKDOWN:
        for match in SECTION_REFERENCE.finditer(path.read_text()):
            references.append((_rel(path), match.group(1)))
    return references


def test_section_reference_pattern_finds_the_forms_used():
    found = [m.group(1) for m in SECTION_REFERENCE.finditer(
        """(see README, 'Install') README "Your data" (README ('pipeline.toml')) the README, "X Y".""")]
    assert found == ["Install", "Your data", "pipeline.toml", "X Y"]


def test_readme_section_references_name_existing_headings():
    references = _section_references()
    assert len(references) >= 5, references  # the messages of config, doctor, io, init_config…
    headings = anchors(README)
    missing = [f"{where}: README, {section!r}" for where, section in references
               if github_anchor(section) not in headings]
    assert not missing, "no such README section: " + "; ".join(missing)


def test_a_missing_config_points_to_the_readme_section_that_explains_it(tmp_path):
    from rna_localization.config import load_config

    with pytest.raises(FileNotFoundError, match=r"README, 'pipeline\.toml'") as error:
        load_config(tmp_path / "pipeline.toml")
    (section,) = SECTION_REFERENCE.findall(str(error.value))
    assert github_anchor(section) in anchors(README)


# ------------------------------------------------------------------ commands
def _command_mentions(path: Path) -> list[str]:
    """Every command line ``rna-localization …`` of a file's code blocks and code spans.

    A command starts a line, a code span, or follows ``&&``, ``;`` or ``|`` (so a quoted message
    such as "another rna-localization command is writing…" is not one); it ends at a comment or
    at the next of those.
    """
    text = path.read_text()
    snippets = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    snippets += re.findall(r"`([^`\n]+)`", _without_code_blocks(text))
    mentions = []
    for snippet in snippets:
        for line in snippet.splitlines():
            for part in re.split(r"&&|;|\|", line.split(" #")[0]):
                part = part.strip().removeprefix("$ ")
                if part == "rna-localization" or part.startswith("rna-localization "):
                    mentions.append(part)
    return mentions


# A placeholder makes a mention a pattern, not a command line: [optional] parts, FILE, DIR,
# <name>, "…", or a choice list such as start | stop.
PLACEHOLDER = re.compile(r"[\[\]<>…]|\.\.\.|^[A-Z][A-Z0-9_=,.]*$")


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _check_command(command: str, where: str) -> bool:
    """Check one mention; returns whether it was parsed as a concrete command line."""
    words = command.split()
    commands = _subcommands()
    if len(words) < 2 or words[1].startswith("-") or PLACEHOLDER.search(words[1]):
        return False  # "rna-localization --version", "rna-localization COMMAND --help", the name
    name = words[1]
    assert name in commands, f"{where}: `{command}`: {name!r} is no rna-localization command"
    flags = _flags(commands[name])
    for word in words[2:]:
        flag = word.strip("[]").split("=")[0]
        if flag.startswith("--"):
            assert flag in flags, f"{where}: `{command}`: {name} has no option {flag}"
    if len(words) == 2 or any(PLACEHOLDER.search(word) for word in words[2:]):
        return False  # a command named in prose (`rna-localization simulate` writes …), a pattern
    try:
        args = build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit:
        pytest.fail(f"{where}: `{command}` is not a valid command line")
    assert args.command == name
    return True


@pytest.mark.parametrize("path", MARKDOWN, ids=_rel)
def test_commands_in_the_docs_are_real_commands_with_real_flags(path):
    mentions = _command_mentions(path)
    parsed = sum(_check_command(command, _rel(path)) for command in mentions)
    if path == README:
        assert len(mentions) >= 20, mentions
        assert parsed >= 5, mentions


def test_the_command_check_rejects_what_the_parser_rejects():
    with pytest.raises(AssertionError, match="no rna-localization command"):
        _check_command("rna-localization segmnet --config pipeline.toml", "here")
    with pytest.raises(AssertionError, match="has no option --structures"):
        _check_command("rna-localization segment --structures rna", "here")
    with pytest.raises(pytest.fail.Exception, match="not a valid command line"):
        _check_command("rna-localization db begin", "here")
    assert _check_command("rna-localization db url", "here")
    assert not _check_command("rna-localization export [--to DIR]", "here")
    assert not _check_command("rna-localization COMMAND --help", "here")


def test_db_url_is_documented_as_it_is_printed():
    """README shows what `db url` prints: a libpq URL (no SQLAlchemy driver suffix)."""
    from rna_localization.db import Database

    (line,) = [line for line in README.read_text().splitlines()
               if re.match(r"rna-localization db url\b", line)]
    printed = Database("postgresql://me@db.lab.org:5432/rna_project").url
    scheme = printed.split("//")[0] + "//"
    assert scheme == "postgresql://"
    assert scheme in line
    assert "+psycopg2" not in line
