"""The sidebar every page shares: which project is open and the state of its model."""

from __future__ import annotations

import streamlit as st

from core.models.source import SOURCE_LABELS
from studio.ui.i18n import language_picker, t
from studio.ui.model_panel import model_status_line
from studio.ui.state import current_project, draft, saved_recipe, set_project, workspace


def render_sidebar() -> None:
    with st.sidebar:
        language_picker()
        projects = workspace().list_projects()
        project = current_project()
        if not projects:
            st.caption(t("No project yet — create one on the Projects page."))
            return
        slugs = [p.slug for p in projects]
        names = {p.slug: p.name for p in projects}
        index = slugs.index(project.slug) if project else None
        chosen = st.selectbox(t("Project"), slugs, index=index, format_func=names.get, placeholder=t("Pick a project"),
                              )  # no key: the index follows the project chosen on any page
        if chosen and (project is None or chosen != project.slug):
            set_project(next(p for p in projects if p.slug == chosen))
            st.rerun()
        if project is None:
            return
        recipe, version = saved_recipe(project)
        label = t(SOURCE_LABELS["embedded"]) if recipe.model.kind == "embedded" else recipe.model.describe()
        st.caption(t("Model: **{model}** — {status}", model=label, status=model_status_line(recipe.model)))
        unsaved = draft(project).to_dict() != recipe.to_dict()
        saved = t("version {number}", number=version) if version else t("not saved yet")
        st.caption(t("Recipe: **{name}**, {saved}", name=recipe.name, saved=saved)
                   + (" · " + t("unsaved changes") if unsaved else ""))
