"""The library's shape: ports import no adapter, only the composition knows every adapter, and no module-level
import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "layers" / "waba_lookup"
PORTS = ("waba_lookup.budget", "waba_lookup.cache", "waba_lookup.queue")
ADAPTERS = (
    "waba_lookup.budget.dynamodb",
    "waba_lookup.budget.tablestore",
    "waba_lookup.cache.s3",
    "waba_lookup.cache.oss",
    "waba_lookup.queue.sqs",
    "waba_lookup.queue.smq",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("waba_lookup"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("waba_lookup")}
    modules = {module_name(p) for p in LIBRARY.rglob("*.py")}
    return found & modules


def test_ports_import_no_adapter_and_only_the_composition_knows_them_all() -> None:
    for path in LIBRARY.rglob("*.py"):
        name = module_name(path)
        used = imports(path, top_level_only=False)
        if name in PORTS:
            assert not used & set(ADAPTERS), f"the port {name} imports an adapter"
        if name != "waba_lookup.compose":
            assert not set(ADAPTERS) <= used, f"{name} knows every adapter"
    assert set(ADAPTERS) <= imports(LIBRARY / "compose.py", top_level_only=False)


def test_no_module_level_import_cycle() -> None:
    graph = {module_name(p): imports(p, top_level_only=True) for p in LIBRARY.rglob("*.py")}

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        for imported in graph.get(name, set()):
            if imported != name and not name.startswith(f"{imported}."):  # a package's own __init__ runs first
                visit(imported, (*path, name))

    for name in graph:
        visit(name, ())
