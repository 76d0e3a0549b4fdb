"""Session helpers: the current project, the saved recipe and the page drafts kept across page changes."""

from __future__ import annotations

import logging
import re

import streamlit as st

from core.errors import ProjectNotFoundError, StudioError
from core.recipe import Recipe, RecipeStore
from core.workspace import Project, Workspace
from studio.ui.i18n import t

log = logging.getLogger("studio")
PROJECT_KEY = "current_project"
PROJECT_PARAM = "project"  # ?project=<folder name> in the address: a reload or a bookmark reopens that project


def workspace() -> Workspace:
    return Workspace()


def current_project() -> Project | None:
    """The project this browser session has open. Each session keeps its own (session state, mirrored in the
    address so a reload keeps it); the server remembers no "last project", which would open one user's pick for
    everyone. A new session opens the project its address names, else the only project when there is just one,
    else none (the Projects page or the sidebar picks one): the server cannot tell which browser picked what."""
    slug = st.session_state.get(PROJECT_KEY)
    if slug is None:  # a new browser session
        project = _opening_project()
        st.session_state[PROJECT_KEY] = project.slug if project else ""
        _show_in_address(project)
        return project
    if not slug:
        _show_in_address(None)
        return None
    try:
        project = workspace().get(slug)
    except ProjectNotFoundError:
        st.session_state[PROJECT_KEY] = ""
        st.session_state["project_vanished"] = slug
        _show_in_address(None)
        return None
    _show_in_address(project)  # changing pages drops the address's parameters: put it back
    return project


def _opening_project() -> Project | None:
    wanted = st.query_params.get(PROJECT_PARAM)
    if wanted:
        try:
            return workspace().get(wanted)
        except ProjectNotFoundError:
            st.session_state["project_vanished"] = wanted
            return None
    projects = workspace().list_projects()
    return projects[0] if len(projects) == 1 else None


def _show_in_address(project: Project | None) -> None:
    if project is None:
        if PROJECT_PARAM in st.query_params:
            del st.query_params[PROJECT_PARAM]
    elif st.query_params.get(PROJECT_PARAM) != project.slug:
        st.query_params[PROJECT_PARAM] = project.slug


def set_project(project: Project | None) -> None:
    """Open `project` in this browser session only (None: close it)."""
    st.session_state[PROJECT_KEY] = project.slug if project else ""
    _show_in_address(project)


def require_project() -> Project:
    """The current project, or a message with a link to the Projects page and an end to this page's run."""
    project = current_project()
    if project is None:
        vanished = st.session_state.pop("project_vanished", None)
        if vanished:
            st.error(t("The project '{name}' was deleted or renamed in another tab; pick or create a project.",
                       name=vanished))
        else:
            st.info(t("Create or pick a project first."))
        st.page_link("../pages/projects.py", label=t("Go to Projects"), icon=":material/folder_open:")
        st.stop()
    return project


def saved_recipe(project: Project) -> tuple[Recipe, int | None]:
    latest = RecipeStore(project).latest()
    return (latest.recipe, latest.number) if latest else (Recipe(), None)


def draft(project: Project) -> Recipe:
    """The recipe being edited: survives page changes, starts from the saved one."""
    drafts = st.session_state.setdefault("drafts", {})
    if project.slug not in drafts:
        drafts[project.slug] = saved_recipe(project)[0]
    return drafts[project.slug]


def set_draft(project: Project, recipe: Recipe) -> None:
    st.session_state.setdefault("drafts", {})[project.slug] = recipe


GENERATIONS_KEY = "widget_generations"


def widget_prefix(base: str) -> str:
    """The prefix of a page's widget keys. Discard changes moves it to a new generation: widgets under new keys
    start from the saved values (with keys merely deleted, the browser kept showing the edited values)."""
    generation = st.session_state.get(GENERATIONS_KEY, {}).get(base, 0)
    return base if not generation else f"{base}g{generation}."


def upload_round(prefix: str) -> int:
    """The round of a page's file fields, part of their keys: a file uploader cannot be emptied through its state, so
    `next_upload_round` gives it a new key instead once its file is used (a second click would use it again)."""
    return st.session_state.get(prefix + "upload_round", 0)


def next_upload_round(prefix: str) -> None:
    st.session_state[prefix + "upload_round"] = upload_round(prefix) + 1


def discard_draft(project: Project, widget_prefix: str) -> None:
    st.session_state.setdefault("drafts", {}).pop(project.slug, None)
    for key in [k for k in st.session_state if str(k).startswith(widget_prefix)]:
        del st.session_state[key]
    base = re.sub(r"g\d+\.$", "", widget_prefix)
    generations = st.session_state.setdefault(GENERATIONS_KEY, {})
    generations[base] = generations.get(base, 0) + 1


def save_draft(project: Project, recipe: Recipe, note: str) -> None:
    try:
        number = RecipeStore(project).save(recipe, note=note)
    except StudioError as exc:
        st.error(t(exc.args[0]))
        return
    set_draft(project, recipe)
    st.toast(t("Saved as recipe version {number}.", number=number), icon=":material/check:")


def recipe_save_bar(project: Project, recipe: Recipe, saved: Recipe, version: int | None, widget_prefix: str,
                    note: str, can_save: bool = True) -> bool:
    """Save the draft as a new recipe version or discard it, with a line saying where things stand.
    Returns whether the draft differs from the saved recipe."""
    changed = recipe.to_dict() != saved.to_dict()
    save_col, discard_col = st.columns(2)
    if save_col.button(t("Save as new recipe version"), type="primary", disabled=not (changed and can_save),
                       icon=":material/save:"):
        save_draft(project, recipe, note=note)
        st.rerun()
    if discard_col.button(t("Discard changes"), disabled=not changed):
        discard_draft(project, widget_prefix)
        st.rerun()
    st.caption((t("Unsaved changes") + " · " if changed else "")
               + (t("saved version {number}", number=version) if version else t("not saved yet")))
    return changed


def show_error(exc: Exception) -> None:
    """A user-caused error as one sentence; anything else also goes to the log with its traceback."""
    if isinstance(exc, StudioError):
        st.error(t(exc.args[0]) if exc.args else t("Something went wrong."))
    else:
        log.exception("unexpected error")
        st.error(t("Something went wrong: {error}. The details are in the server log.", error=str(exc)))
