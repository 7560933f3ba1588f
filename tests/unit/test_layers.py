"""The layer rules, checked on the import graph (imports under ``if TYPE_CHECKING:`` are types only
and do not count):

- ``gateway/wire/`` moves bytes and knows no dialect: it imports nothing from ``providers``,
  ``simulators`` or ``gateway.apis`` (nor any other part of the gateway but itself and ``errors``);
- ``providers/`` translate and know no gateway: of the gateway they import only ``gateway.errors``
  and ``gateway.wire.types``;
- nothing in ``gateway/`` or ``providers/`` imports ``simulators`` except the composition roots:
  ``app`` mounts the in-process mock, the CLI serves ``mock-upstream``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def runtime_imports(path: Path) -> list[str]:
    """The modules a file imports when it runs (not those only a type checker reads)."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for child in node.body for n in ast.walk(child))
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def files(folder: str) -> list[Path]:
    found = sorted((ROOT / folder).rglob("*.py"))
    assert found, folder
    return found


def test_the_wire_knows_no_dialect() -> None:
    for f in files("gateway/wire"):
        for m in runtime_imports(f):
            top = m.split(".")[0]
            assert top not in ("providers", "simulators"), (f, m)
            if top == "gateway":
                assert m.startswith(("gateway.wire", "gateway.errors")), (f, m)


def test_providers_import_only_errors_and_wire_types_of_the_gateway() -> None:
    for f in files("providers"):
        for m in runtime_imports(f):
            assert m.split(".")[0] != "simulators", (f, m)
            if m.split(".")[0] == "gateway":
                assert m in ("gateway.errors", "gateway.wire.types"), (f, m)


def test_only_the_composition_root_reaches_the_simulators() -> None:
    for f in files("gateway"):
        if f.parent.name == "gateway" and f.name in ("app.py", "cli.py"):
            continue
        for m in runtime_imports(f):
            assert m.split(".")[0] != "simulators", (f, m)
