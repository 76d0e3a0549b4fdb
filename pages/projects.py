"""Projects: create, open, rename, duplicate, delete. Everything a project holds lives in its folder."""

import pandas as pd
import streamlit as st

from core import sample
from core.data.pairs import load_pairs
from core.errors import StudioError
from core.recipe import RecipeStore
from studio.ui.bundle_panel import import_panel
from studio.ui.i18n import t
from studio.ui.state import current_project, set_project, show_error, workspace

st.title(t("Projects"))
st.write(t("A project holds one assistant you are building: its recipe versions, datasets, indexes, "
           "training runs and adapters. Start here, then climb the ladder in the sidebar."))

ws = workspace()


def create_and_open(make, quiet: bool = False) -> None:
    """Run an action that makes (or renames) a project, open the result, or show why it failed."""
    try:
        project = make()
    except Exception as exc:
        show_error(exc)
        return
    set_project(project)
    if not quiet:
        st.toast(t("Created '{name}'.", name=project.name), icon=":material/check:")
    st.rerun()


left, right = st.columns(2)
with left.form("create_project", clear_on_submit=True):
    st.subheader(t("New project"))
    name = st.text_input(t("Name"), placeholder=t("e.g. Customer support assistant"))
    if st.form_submit_button(t("Create project"), type="primary", icon=":material/add:"):
        create_and_open(lambda: ws.create(name))
with right.container(border=True):
    st.subheader(t("Sample project"))
    st.write(t("A small made-up bike shop with a prompt, few-shot examples, documents and an eval set: "
               "the quickest way to see each step pay off. Its documents are indexed as it is created."))
    if st.button(t("Create the sample project"), icon=":material/auto_awesome:"):
        create_and_open(lambda: sample.create_sample_project(ws, index=True))
import_panel(ws)

projects = ws.list_projects()
if not projects:
    st.info(t("No projects yet. Create one above, or start from the sample project."))
    st.stop()

st.subheader(t("Your projects"))
rows = []
for p in projects:
    latest = RecipeStore(p).latest()
    rows.append({"name": p.name, "folder": str(p.path), "versions": latest.number if latest else 0,
                 "examples": len(load_pairs(p, "examples")),
                 "created": pd.to_datetime(p.created, unit="s").strftime("%Y-%m-%d %H:%M")})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
    "name": t("Name"), "folder": t("Folder"), "versions": t("Recipe versions"),
    "examples": t("Few-shot examples"), "created": t("Created")})
st.caption(t("Projects are folders under {folder} (set STUDIO_HOME to move them).", folder=str(ws.projects_dir)))

current = current_project()
names = [p.name for p in projects]
chosen_name = st.selectbox(t("Open project"), names, index=names.index(current.name) if current else 0)
chosen = projects[names.index(chosen_name)]
if current is None or chosen.slug != current.slug:
    if st.button(t("Open '{name}'", name=chosen.name), type="primary", icon=":material/folder_open:"):
        set_project(chosen)
        st.rerun()
    st.stop()

st.success(t("Open: **{name}**. Next: check the **Model**, then write your **Prompt**.", name=current.name))
col_model, col_prompt = st.columns(2)
col_model.page_link("../pages/model.py", label=t("Model"), icon=":material/memory:")
col_prompt.page_link("../pages/prompt.py", label=t("1 · Prompt"), icon=":material/edit_note:")

with st.expander(t("Rename or duplicate"), icon=":material/edit:", key="projects.rename_panel"):
    new_name = st.text_input(t("New name"), value=current.name, key="projects.rename")
    rename_col, duplicate_col = st.columns(2)
    if rename_col.button(t("Rename")):
        create_and_open(lambda: ws.rename(current, new_name), quiet=True)
    if duplicate_col.button(t("Duplicate under the new name")):
        create_and_open(lambda: ws.duplicate(current, new_name))

with st.expander(t("Delete this project"), icon=":material/delete:", key="projects.delete_panel"):
    st.warning(t("This deletes the folder {folder} with all its recipes, datasets, runs and adapters.",
                 folder=str(current.path)))
    confirm = st.text_input(t("Type **{name}** to confirm", name=current.name), key="projects.delete_confirm")
    if st.button(t("Delete project"), type="primary", disabled=confirm.strip() != current.name):
        try:
            ws.delete(current, confirm)
            set_project(None)
            st.session_state.pop("projects.delete_confirm", None)
            st.rerun()
        except StudioError as exc:
            show_error(exc)
