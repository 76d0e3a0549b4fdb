"""Each browser session has its own project: picking one in a session never opens it in another session, and the
address (?project=) keeps it across a reload."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from apptest_helpers import APP
from studio.ui.state import PROJECT_KEY


def _session(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open(at: AppTest) -> str:
    return at.session_state[PROJECT_KEY] if PROJECT_KEY in at.session_state else None


def _pick(at: AppTest, slug: str) -> None:
    next(s for s in at.sidebar.selectbox if s.label == "Project").select(slug).run()
    assert not at.exception, [e.value for e in at.exception]


def test_a_new_session_does_not_open_the_project_another_session_picked(workspace):
    alpha, beta = workspace.create("Alpha"), workspace.create("Beta")
    session_a = _session()
    assert _open(session_a) == ""  # two projects and no address: none is opened for you
    _pick(session_a, beta.slug)
    assert _open(session_a) == beta.slug
    assert session_a.query_params["project"] == beta.slug  # a reload of A's page keeps Beta

    session_b = _session()  # another user, or another browser, after A picked Beta
    assert _open(session_b) == ""
    assert "project" not in session_b.query_params
    _pick(session_b, alpha.slug)
    assert _open(session_b) == alpha.slug
    session_a.run()
    assert _open(session_a) == beta.slug  # B's pick did not move A either


def test_the_address_reopens_its_project_after_a_reload(workspace):
    workspace.create("Alpha")
    beta = workspace.create("Beta")
    reloaded = _session(project=beta.slug)
    assert _open(reloaded) == beta.slug
    assert reloaded.query_params["project"] == beta.slug
    reloaded.switch_page("../pages/datasets.py").run()  # changing pages keeps it in the address
    assert _open(reloaded) == beta.slug and reloaded.query_params["project"] == beta.slug


def test_the_only_project_opens_by_itself(workspace):
    only = workspace.create("Only one")
    assert _open(_session()) == only.slug


def test_an_address_naming_a_deleted_project_opens_none(workspace):
    workspace.create("Alpha")
    at = _session(project="gone")
    assert _open(at) == "" and "project" not in at.query_params
