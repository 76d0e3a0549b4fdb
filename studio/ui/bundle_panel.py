"""Assistant bundles in the UI: build one from a recipe version and download it; import one as a new project."""

from __future__ import annotations

import streamlit as st

from core.bundle import export_bundle, import_bundle, model_warnings
from core.recipe import RecipeStore, list_recipes
from core.workspace import Project, Workspace
from studio.ui.i18n import t
from studio.ui.state import set_project, show_error

K = "bundle."
IMPORTED = K + "imported"  # (project name, warnings) shown once after the import's rerun


def export_panel(project: Project) -> None:
    """Pick a recipe version, build its bundle (recipe, adapter, knowledge base, examples), download it."""
    recipe_col, version_col = st.columns(2)
    recipe_name = recipe_col.selectbox(t("Recipe"), list_recipes(project), key=K + "recipe")
    versions = RecipeStore(project, recipe_name).versions()
    if not versions:
        st.info(t("Save the recipe first (on the Prompt page): a bundle holds a saved version."))
        return
    numbers = [v.number for v in reversed(versions)]
    notes = {v.number: v.note for v in versions}
    number = version_col.selectbox(t("Version"), numbers, key=K + "version",
                                   format_func=lambda n: f"v{n}" + (f" · {notes[n]}" if notes[n] else ""))
    recipe = next(v.recipe for v in versions if v.number == number)
    parts = [t("the recipe"), t("sample questions")]
    if recipe.adapter:
        parts.append(t("the adapter {name}", name=recipe.adapter))
    if recipe.retriever.enabled:
        parts.append(t("the knowledge base {name} (passages and documents)", name=recipe.retriever.knowledge_base))
    if recipe.fewshot.enabled:
        parts.append(t("the few-shot examples of {name}", name=recipe.fewshot.dataset))
    st.caption(t("The bundle holds {parts}. API keys are never included, only the names of their variables.",
                 parts=", ".join(parts)))
    built = st.session_state.get(K + "built")
    if st.button(t("Build the bundle"), type="primary", icon=":material/inventory_2:", key=K + "build"):
        bar = st.progress(0.0, text=t("Building…"))
        try:
            path = export_bundle(project, recipe_name, number,
                                 progress=lambda f, message: bar.progress(min(max(f, 0.0), 1.0), text=t(message)))
            built = st.session_state[K + "built"] = {"project": project.slug, "path": str(path)}
        except Exception as exc:
            show_error(exc)
        bar.empty()
    if built and built["project"] == project.slug:
        from pathlib import Path

        path = Path(built["path"])
        if path.is_file():
            st.download_button(t("Download {file}", file=path.name), path.read_bytes(), file_name=path.name,
                               mime="application/zip", icon=":material/download:", key=K + "download")


def import_panel(workspace: Workspace) -> None:
    """Upload a bundle and import it as a new project (then open it); a bad archive gets one clear sentence."""
    shown = st.session_state.pop(IMPORTED, None)
    if shown:
        st.success(t("Imported the bundle as '{name}'.", name=shown["name"]))
        for warning in shown["warnings"]:
            st.warning(t(warning))
    with st.expander(t("Import an assistant bundle"), icon=":material/unarchive:"):
        st.caption(t("A .zip made with Export bundle: the recipe, its adapter, knowledge base, few-shot examples "
                     "and sample questions become a new project. Every file is checked first; larger bundles "
                     "import with: studio bundle import FILE"))
        upload = st.file_uploader(t("Bundle (.zip)"), type=["zip"], key=K + "upload")
        name = st.text_input(t("Project name (optional)"), key=K + "name",
                             placeholder=t("the name stored in the bundle"))
        if st.button(t("Import the bundle"), type="primary", disabled=upload is None, icon=":material/upload:",
                     key=K + "import"):
            try:
                with st.spinner(t("Checking and importing…")):
                    project = import_bundle(upload, workspace, name or None)
            except Exception as exc:
                show_error(exc)
                return
            st.session_state[IMPORTED] = {"name": project.name, "warnings": list(model_warnings(project))}
            set_project(project)
            st.rerun()
