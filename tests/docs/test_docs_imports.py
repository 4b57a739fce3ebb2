"""Every ``from hubtune... import ...`` / ``import hubtune...`` line in README.md and docs/ names real things."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.helpers.paths import ROOT

_FROM = re.compile(r"^\s*(?:>>>\s*)?from\s+(hubtune[\w.]*)\s+import\s+(.+?)\s*(?:#.*)?$")
_IMPORT = re.compile(r"^\s*(?:>>>\s*)?import\s+(hubtune[\w.]*)\s*(?:#.*)?$")


def _doc_imports() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for line in doc.read_text(encoding="utf-8").splitlines():
            if m := _FROM.match(line):
                names = [n.split(" as ")[0].strip(" ()") for n in m.group(2).split(",")]
                found.append((doc.relative_to(ROOT).as_posix(), m.group(1), [n for n in names if n]))
            elif m := _IMPORT.match(line):
                found.append((doc.relative_to(ROOT).as_posix(), m.group(1), []))
    return found


def test_the_docs_have_import_lines_to_check() -> None:
    assert len(_doc_imports()) >= 5


@pytest.mark.parametrize(("doc", "module", "names"), _doc_imports(), ids=lambda v: str(v))
def test_doc_import_line_resolves(doc: str, module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{doc}: `from {module} import` names {missing}, which {module} lacks"
