"""Shared helpers for the page tests: open a page from studio/app.py and find a button by its label."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "studio" / "app.py")


def open_page(page: str, timeout: float = 120) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    if page != "projects":
        at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)
