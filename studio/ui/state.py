"""Session helpers: the current project, the saved recipe and the page drafts kept across page changes."""

from __future__ import annotations

import logging

import streamlit as st

from core.errors import ProjectNotFoundError, StudioError
from core.recipe import Recipe, RecipeStore
from core.workspace import Project, Workspace
from studio.ui.i18n import t

log = logging.getLogger("studio")
PROJECT_KEY = "current_project"


def workspace() -> Workspace:
    return Workspace()


def current_project() -> Project | None:
    slug = st.session_state.get(PROJECT_KEY)
    if slug is None:  # a new browser session: reopen the last project
        last = workspace().last_opened()
        st.session_state[PROJECT_KEY] = last.slug if last else ""
        return last
    if not slug:
        return None
    try:
        return workspace().get(slug)
    except ProjectNotFoundError:
        st.session_state[PROJECT_KEY] = ""
        st.session_state["project_vanished"] = slug
        return None


def set_project(project: Project | None) -> None:
    st.session_state[PROJECT_KEY] = project.slug if project else ""
    workspace().remember_last(project)


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


def discard_draft(project: Project, widget_prefix: str) -> None:
    st.session_state.setdefault("drafts", {}).pop(project.slug, None)
    for key in [k for k in st.session_state if str(k).startswith(widget_prefix)]:
        del st.session_state[key]


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
