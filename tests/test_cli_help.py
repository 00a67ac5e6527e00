"""Every subcommand's ``--help`` says what it does in a sentence and shows how it is run.

The commands are enumerated from the parser itself, so a new command without help text fails
here; each runs through the installed ``rna-localization`` script, as a user types it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rna_localization.cli import build_parser

from helpers import subcommands as _subcommands

SCRIPT = shutil.which("rna-localization") or str(Path(sys.executable).with_name("rna-localization"))


COMMANDS = sorted(_subcommands())


def test_the_parser_has_the_commands_of_the_contract():
    # Guards the enumeration below: an empty or broken list would make the help test vacuous.
    assert set(COMMANDS) >= {"db", "segment", "extract", "distances", "metadata", "normalize",
                             "distributions", "plot", "run", "export", "backup", "restore",
                             "simulate", "demo", "doctor", "import", "init"}


def _examples(help_text: str) -> list[str]:
    """The lines under the ``Example(s):`` heading of a help text, stripped."""
    lines = help_text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"Examples?:\s*$", line)]
    assert len(starts) == 1, help_text
    examples = []
    for line in lines[starts[0] + 1:]:
        if not line.strip():
            break
        examples.append(line.strip())
    return examples


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_a_sentence_and_an_example(command):
    done = subprocess.run([SCRIPT, command, "--help"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"usage: rna-localization {command}")
    # The description: the paragraph after the usage, one sentence (capital first, full stop).
    paragraphs = re.split(r"\n\s*\n", text)
    description = " ".join(paragraphs[1].split())
    assert re.fullmatch(r"[A-Z][^\n]{20,}\.", description), description
    examples = _examples(text)
    assert examples, text
    for example in examples:
        assert example == f"rna-localization {command}" or example.startswith(
            f"rna-localization {command} "), example


@pytest.mark.parametrize("command", COMMANDS)
def test_every_example_in_the_help_is_a_valid_command_line(command):
    """An example that the parser rejects would teach a user a wrong command."""
    examples = _examples(_subcommands()[command].format_help())
    for example in examples:
        args = build_parser().parse_args(shlex.split(example)[1:])
        assert args.command == command
