"""core/'s parts import each other in one direction: no two subpackages (or top-level modules) depend on each other,
even through a third one or an import inside a function, so each layer can be read, tested and changed without
the ones above it. The lower layers stay below: models never needs finetune, data never needs finetune, rag
never needs evaluate."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "core"
FORBIDDEN = [("models", "finetune"), ("data", "finetune"), ("rag", "evaluate")]


def _parts(core: Path) -> set[str]:
    """The nodes: core's subpackages and top-level modules (core/assistant.py is 'assistant')."""
    return {p.name for p in core.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | \
        {p.stem for p in core.glob("*.py") if p.stem != "__init__"}


def _targets(node: ast.AST, package: list[str]) -> list[str]:
    """The dotted names an import statement (or an import_module / __import__ call) may load."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = ".".join(package[:len(package) - node.level + 1]) if node.level else node.module or ""
        if node.level and node.module:
            base = f"{base}.{node.module}" if base else node.module
        # `from core import recipe` and `from . import x` name modules in the names too
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        return [node.args[0].value]
    return []


def core_edges(core: Path) -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) -> where, for every import between two different parts of `core`."""
    parts, root = _parts(core), core.name
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(core.rglob("*.py")):
        relative = path.relative_to(core.parent).with_suffix("").parts
        if len(relative) < 2:
            continue
        package = list(relative[:-1])  # a module's package; for __init__.py, the package itself
        source = relative[1] if relative[1] != "__init__" else None
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            seen = set()  # one location per statement and imported part
            for name in _targets(node, package):
                pieces = name.split(".")
                if len(pieces) < 2 or pieces[0] != root or pieces[1] not in parts or pieces[1] in seen:
                    continue
                seen.add(pieces[1])
                if source and pieces[1] != source:
                    edges[(source, pieces[1])].append(f"{path.relative_to(core.parent)}:{node.lineno} {name}")
    return dict(edges)


def cycles(edges) -> list[set[str]]:
    """The strongly connected components with more than one part (each is at least one import cycle)."""
    graph = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        return seen

    reach = {node: reachable(node) for node in list(graph)}
    found = []
    for node in sorted(reach):
        component = {node} | {other for other in reach[node] if node in reach.get(other, ())}
        if len(component) > 1 and component not in found:
            found.append(component)
    return found


def _describe(component: set[str], edges) -> str:
    return "\n".join(f"  {s} -> {t}: " + "; ".join(where) for (s, t), where in sorted(edges.items())
                     if s in component and t in component)


def test_the_graph_is_read():
    edges = core_edges(CORE)
    assert len(edges) >= 20
    assert ("finetune", "models") in edges and ("recipe", "rag") in edges  # plain and dotted imports
    assert ("assistant", "models") in edges  # a top-level module is a part of its own


def test_core_parts_have_no_import_cycle():
    edges = core_edges(CORE)
    found = cycles(edges)
    assert found == [], "import cycles between core parts:\n" + "\n".join(
        f"{sorted(c)}\n{_describe(c, edges)}" for c in found)


@pytest.mark.parametrize("source, target", FORBIDDEN, ids=lambda p: p)
def test_lower_layers_do_not_import_higher_ones(source, target):
    where = core_edges(CORE).get((source, target), [])
    assert where == [], f"core.{source} must not import core.{target}: " + "; ".join(where)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "core"


def test_the_checker_would_notice(tmp_path):
    core = _write(tmp_path, {
        "core/__init__.py": "from core.tools import x\n",  # the package itself is no part
        "core/tools.py": "import os\n",
        "core/models/__init__.py": "",
        "core/models/registry.py": "def load():\n    from ..finetune.adapters import apply\n",  # relative, in a function
        "core/finetune/__init__.py": "",
        "core/finetune/adapters.py": "from core.models import registry\nfrom . import other\n",
        "core/finetune/other.py": "import importlib\nimportlib.import_module('core.rag.kb')\n",
        "core/rag/__init__.py": "",
        "core/rag/kb.py": "from core import tools\nfrom .. import evaluate\n",
        "core/evaluate/__init__.py": "",
    })
    edges = core_edges(core)
    assert set(edges) == {("models", "finetune"), ("finetune", "models"), ("finetune", "rag"), ("rag", "tools"),
                          ("rag", "evaluate")}
    assert edges[("models", "finetune")] == ["core/models/registry.py:2 core.finetune.adapters"]
    assert cycles(edges) == [{"finetune", "models"}]
    assert cycles({**edges, ("evaluate", "finetune"): []}) == [{"evaluate", "finetune", "models", "rag"}]
    assert cycles({("a", "b"): [], ("b", "c"): []}) == []
