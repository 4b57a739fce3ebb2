"""Every code block in README.md and docs/ is run by a named test or says why not
(tests/helpers/docs_blocks.py), and every ``hubtune`` command line in them uses real options."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer

from hubtune.cli import app
from tests.helpers.docs_blocks import REGISTRY, ROOT, RUN, all_blocks


def test_every_block_is_registered_and_every_entry_names_a_block() -> None:
    blocks = all_blocks()
    assert len(blocks) >= 40
    keys = [b.key for b in blocks]
    missing = [f"{b.doc}:{b.line}: {b.key[1]!r}" for b in blocks if b.key not in REGISTRY]
    assert not missing, "blocks without a test or a reason (add them to tests/helpers/docs_blocks.py):\n" \
        + "\n".join(missing)
    stale = [k for k in REGISTRY if k not in keys]
    assert not stale, f"registry entries whose block is gone: {stale}"
    assert len(set(keys)) == len(keys), "two blocks of one file start with the same line"


@pytest.mark.parametrize("key", [k for k, v in REGISTRY.items() if v[0] == RUN], ids=str)
def test_every_run_entry_names_an_existing_test(key) -> None:
    path, func = REGISTRY[key][1].split("::")
    source = (ROOT / path).read_text(encoding="utf-8")
    assert re.search(rf"^def {func}\(", source, re.M), f"{path} has no test {func}"
    if path.endswith("test_docs_examples.py"):  # it must read this block from the docs
        doc, first = key
        assert doc in source, f"{func}: never reads {doc}"


def _command(words: list[str]) -> tuple[Any, list[str], str]:
    """The (typer/click) command a ``hubtune ...`` line runs, the rest of its words, and its name."""
    cmd = typer.main.get_command(app)
    name = "hubtune"
    rest = list(words)
    while hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:
        name += " " + rest[0]
        cmd = cmd.commands[rest.pop(0)]
    return cmd, rest, name


def _command_lines() -> list[tuple[str, str]]:
    lines = []
    for b in all_blocks():
        for ln in b.commands():
            lines.append((f"{b.doc}:{b.line}", ln))
    return lines


def test_the_docs_have_command_lines_to_check() -> None:
    assert len(_command_lines()) >= 40


@pytest.mark.parametrize(("where", "line"), _command_lines(), ids=lambda v: str(v)[:80])
def test_documented_options_exist(where: str, line: str) -> None:
    words = shlex.split(re.sub(r"[\[\]]", " ", line.replace("...", " ")))[1:]
    cmd, rest, name = _command(words)
    assert not hasattr(cmd, "commands") or not rest or rest[0].startswith("-"), \
        f"{where}: `{line}`: {name} has no subcommand {rest[:1]}"
    known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
    used = {w.split("=")[0] for w in rest if w.startswith("--")}
    unknown = sorted(used - known)
    assert not unknown, f"{where}: `{line}`: {name} has no option {unknown}"
