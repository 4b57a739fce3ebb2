"""The import graph of ``src/hubtune`` runs downwards only (docs/architecture.md).

Every ``import`` and ``from ... import`` statement is read with ``ast``, at module
level and inside functions (``TYPE_CHECKING`` blocks included), and checked
against the layer list: a package may import its own layer's package and any
lower layer, never a higher one nor a sibling on its own floor.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.paths import SRC

# lowest first; packages on one floor may not import each other
LAYERS: list[set[str]] = [
    {"core"},
    {"space", "hub"},
    {"data", "metadata"},
    {"protocol"},
    {"finetune"},
    {"surrogate"},
    {"optim"},
    {"search"},
    {"integrations"},  # trackers (used by tuner) and the Ray Tune adapter (uses optim)
    {"tuner", "bench", "metagen"},
    {"commands"},
    {"cli"},
]
FLOOR = {pkg: i for i, floor in enumerate(LAYERS) for pkg in floor}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "hubtune" and len(parts) > 1 else None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__":
            continue  # the package face (lazy names only)
        assert own in FLOOR, f"{rel}: package {own!r} is in no layer of this test"
        for line, module in _imports(path):
            other = _package(module)
            if other is None or other == own:
                continue
            if other not in FLOOR:
                bad.append(f"{rel}:{line} imports {module} (package in no layer)")
            elif FLOOR[other] >= FLOOR[own]:
                bad.append(f"{rel}:{line} ({own}, floor {FLOOR[own]}) imports {module} "
                           f"({other}, floor {FLOOR[other]})")
    return bad


def test_every_package_is_in_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert packages <= set(FLOOR), sorted(packages - set(FLOOR))


def test_imports_run_downwards_only() -> None:
    bad = _violations()
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)
