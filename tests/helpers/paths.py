"""Paths the tests share, computed once from this file's place in the repository."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository root (tests/helpers/paths.py)
SRC = ROOT / "src" / "hubtune"
DOCS = ROOT / "docs"
BENCHMARKS = ROOT / "benchmarks"
FIXTURES = ROOT / "tests" / "fixtures"
SHARED = ROOT.parent / "shared"  # read-only data beside the checkout, never copied into it
QT_EXTENDED = SHARED / "metadata" / "quicktune-extended"
