"""The layering in docs/architecture.md, checked against every import in src/heal.

A new import that points upwards (the domain reaching for the database, the store for the
engine, ...) fails here, so the map and the code cannot drift apart unnoticed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "heal"
ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def allowed_imports() -> dict[str, set[str]]:
    """The "may import" column of the layer table in docs/architecture.md."""
    table: dict[str, set[str]] = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        row = re.match(r"\|\s*`heal\.([a-z_]+)`\s*\|[^|]*\|([^|]*)\|", line)
        if row:
            table[row.group(1)] = set(re.findall(r"`([a-z_]+)`", row.group(2)))
    return table


def layer_of(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return parts[0]


def heal_imports(path: Path) -> set[str]:
    """Top-level heal packages a module imports (``from heal.store import x`` -> store)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "heal" and len(parts) > 1:
                found.add(parts[1])
    return found


MODULES = sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def test_every_layer_is_on_the_map() -> None:
    table = allowed_imports()
    layers = {layer_of(p) for p in MODULES if p.parent != SRC}
    modules = {p.stem for p in MODULES if p.parent == SRC and p.stem not in {"__init__"}}
    missing = sorted((layers | modules) - set(table) - {"__main__"})
    assert not missing, f"docs/architecture.md has no row for: {missing}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_downwards(path: Path) -> None:
    table = allowed_imports()
    layer = layer_of(path)
    if layer in {"__main__", "__init__"}:
        return
    allowed = table[layer] | {layer}
    upward = sorted(heal_imports(path) - allowed)
    assert not upward, (
        f"{path.relative_to(SRC)} ({layer}) imports {upward}; "
        f"docs/architecture.md allows {sorted(allowed)}"
    )
