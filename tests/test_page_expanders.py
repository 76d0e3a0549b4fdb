"""Expanders that hold inputs keep their identity across reruns.

An unkeyed expander is identified by its label and arguments, and by what is drawn before it: when a job's status
or a count in the label changes, Streamlit draws a new expander and the one the user just opened closes again
(seen on the Retriever page after indexing). A key makes the open/closed state the user's.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UI_FILES = sorted((ROOT / "pages").glob("*.py")) + sorted((ROOT / "studio").glob("*.py"))


def calls_with_key(node: ast.AST) -> bool:
    return any(isinstance(inner, ast.Call) and any(k.arg == "key" for k in inner.keywords)
               for inner in ast.walk(node))


def unkeyed_expanders_with_inputs(source: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.With):
            continue
        for item in node.items:
            call = item.context_expr
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "expander"
                    and not any(k.arg == "key" for k in call.keywords)
                    and any(calls_with_key(statement) for statement in node.body)):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_expanders_holding_inputs_are_keyed(path):
    assert unkeyed_expanders_with_inputs(path.read_text(encoding="utf-8")) == []


def test_the_check_finds_an_unkeyed_expander():
    source = ("import streamlit as st\n"
              "with st.expander('Options'):\n"
              "    st.toggle('Fast', key='fast')\n"
              "with st.expander('Keyed', key='k'):\n"
              "    st.toggle('Slow', key='slow')\n"
              "with st.expander('Only text'):\n"
              "    st.write('hello')\n")
    assert unkeyed_expanders_with_inputs(source) == [2]
