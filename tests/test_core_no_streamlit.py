"""core/ is the engine behind the UI and the CLI: it never imports streamlit, and its light modules load fast."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "core"
CORE_FILES = sorted(CORE.rglob("*.py"))
LIGHT_MODULES = ["core.workspace", "core.recipe", "core.prompt", "core.fewshot", "core.assistant",
                 "core.data.pairs", "core.models.registry"]
HEAVY = ["torch", "transformers", "streamlit", "sentence_transformers"]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value))
    return names


def test_core_files_found():
    assert len(CORE_FILES) >= 20
    assert CORE / "workspace.py" in CORE_FILES and CORE / "models" / "local.py" in CORE_FILES


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_never_imports_streamlit(path):
    bad = sorted(name for name in _imported_modules(path) if name == "streamlit" or name.startswith("streamlit."))
    assert bad == [], f"{path.relative_to(CORE.parent)} imports {bad}"
    bad_ui = sorted(name for name in _imported_modules(path) if name.split(".")[0] in ("studio", "pages"))
    assert bad_ui == [], f"{path.relative_to(CORE.parent)} imports the UI package: {bad_ui}"


def test_the_checker_would_notice(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom streamlit import session_state\ndef f():\n    import streamlit.components\n")
    assert {"streamlit", "streamlit.components"} <= _imported_modules(sample)


def test_light_modules_do_not_load_torch_or_transformers():
    code = (
        "import json, sys\n"
        f"for name in {LIGHT_MODULES!r}:\n"
        "    __import__(name)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=CORE.parent)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
