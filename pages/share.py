"""Demo & share: show the assistant to stakeholders, then take it out of the studio (bundle, endpoint)."""

import socket
from pathlib import Path

import streamlit as st

from core import demo
from core.errors import StudioError
from core.hosts import is_loopback
from core.rag.kb import indexed_knowledge_bases
from core.recipe import RecipeStore, list_recipes
from core.report import latest_finished_run
from studio.ui.demo_state import start_presenting
from studio.ui.i18n import t
from studio.ui.report_panel import report_buttons
from studio.ui.state import require_project, show_error

APP_PATH = Path(__file__).resolve().parent.parent / "studio" / "app.py"

project = require_project()
slug = project.slug
settings = demo.load_settings(project)

st.title(t("Demo & share"))
st.caption(t("Show the assistant to colleagues in a clean chat with only your recipe, then take it out of the "
             "studio as a bundle or an API."))
demo_tab, bundle_tab, api_tab = st.tabs([t("Demo"), t("Bundle"), t("API endpoint")])

with demo_tab:
    recipes = list_recipes(project)
    look, access = st.columns([3, 2], gap="large")
    with look:
        st.subheader(t("What visitors see"))
        recipe_name = st.selectbox(t("Recipe"), recipes, index=recipes.index(settings.recipe)
                                   if settings.recipe in recipes else 0, key=f"share.{slug}.recipe")
        versions = [v.number for v in reversed(RecipeStore(project, recipe_name).versions())]
        if not versions:
            st.warning(t("Save a recipe version first: the demo shows a saved recipe."))
        choices = [None] + versions
        version = st.selectbox(t("Recipe version"), choices, index=choices.index(settings.version)
                               if settings.version in choices else 0, key=f"share.{slug}.version",
                               format_func=lambda n: t("always the latest") if n is None else t("version {number}",
                                                                                                  number=n))
        if versions and not RecipeStore(project, recipe_name).load(version).retriever.enabled \
                and indexed_knowledge_bases(project):
            st.warning(t("This recipe version does not search your indexed documents: visitors get answers without "
                         "them. Turn the retriever on (3 · Retriever, or *Answer from the documents* on the Chat "
                         "page) and save."))
        title = st.text_input(t("Title"), value=settings.title, placeholder=project.name, max_chars=80,
                              key=f"share.{slug}.title")
        welcome = st.text_area(t("Welcome text"), value=settings.welcome, height=80, key=f"share.{slug}.welcome",
                               placeholder=t("Ask me about our opening hours, prices and repairs."))
        samples = st.text_area(t("Sample questions (one per line, at most {count})", count=demo.MAX_SAMPLE_QUESTIONS),
                               value="\n".join(settings.sample_questions), height=110, key=f"share.{slug}.samples")
        color_column, sources_column = st.columns(2)
        color = color_column.color_picker(t("Accent colour"), value=settings.primary_color, key=f"share.{slug}.color")
        show_sources = sources_column.toggle(t("Show sources under answers"), value=settings.show_sources,
                                             key=f"share.{slug}.sources")
        logo_file = st.file_uploader(t("Logo (PNG, JPG, GIF or WebP, up to 2 MB)"), type=list(demo.LOGO_TYPES),
                                     key=f"share.{slug}.logo", max_upload_size=demo.MAX_LOGO_BYTES // 2**20)
        current_logo = demo.logo_path(project, settings)
        if current_logo is not None:
            st.image(str(current_logo), width=96)
        if st.button(t("Save demo settings"), type="primary", icon=":material/save:"):
            try:
                logo = demo.save_logo(project, logo_file.name, logo_file.getvalue()) if logo_file else settings.logo
                settings = settings.with_changes(recipe=recipe_name, version=version, title=title.strip(),
                                                 welcome=welcome.strip(), sample_questions=tuple(samples.splitlines()),
                                                 primary_color=color, show_sources=show_sources, logo=logo)
                demo.save_settings(project, settings)
                st.toast(t("Demo settings saved."), icon=":material/check:")
            except StudioError as exc:
                show_error(exc)

    with access:
        st.subheader(t("Present"))
        st.caption(t("Switch this tab to the demo: only the chat stays; a button at the bottom brings the studio "
                     "back."))
        if st.button(t("Present in this tab"), icon=":material/co_present:", disabled=not versions):
            start_presenting(slug)
            st.rerun()

        st.subheader(t("Report for stakeholders"))
        report_run = latest_finished_run(project)
        st.caption(t("The chosen recipe, with the scoreboard of the latest finished evaluation ({run}).",
                     run=report_run.id) if report_run else
                   t("The chosen recipe; finish an evaluation on the Evaluation page to add its scoreboard."))
        report_version = version or (versions[0] if versions else None)
        report_buttons(project, report_run, RecipeStore(project, recipe_name).load(report_version), report_version,
                       f"share.{slug}.")

        st.subheader(t("Password"))
        if settings.protected:
            st.success(t("A password protects the demo server (only its hash is stored)."), icon=":material/lock:")
            if st.button(t("Remove the password")):
                demo.save_settings(project, settings.with_changes(password_hash=""))
                st.rerun()
        with st.form(f"share.{slug}.password", clear_on_submit=True, border=False):
            password = st.text_input(t("New password (at least 8 characters)"), type="password")
            if st.form_submit_button(t("Set password")):
                try:
                    demo.save_settings(project, settings.with_changes(password_hash=demo.hash_password(password)))
                    st.toast(t("Password set."), icon=":material/lock:")
                    st.rerun()
                except StudioError as exc:
                    show_error(exc)

        st.subheader(t("Demo server"))
        running = demo.running_server(project)
        if running:
            address = "localhost" if is_loopback(running["host"]) else socket.gethostname()
            url = f"http://{address}:{running['port']}"
            st.success(t("The demo runs at {url}", url=url), icon=":material/podcasts:")
            st.link_button(t("Open the demo"), url, icon=":material/open_in_new:")
            if st.button(t("Stop the demo server"), icon=":material/stop:"):
                demo.stop_server(project)
                st.rerun()
        else:
            network = st.toggle(t("Open to the network"), value=False, disabled=not settings.protected,
                                key=f"share.{slug}.network",
                                help=t("Without a password the demo listens on this computer only."))
            port = st.number_input(t("Port"), min_value=1024, max_value=65535, value=8502, key=f"share.{slug}.port")
            if st.button(t("Start the demo server"), icon=":material/play_arrow:", disabled=not versions):
                try:
                    demo.start_server(project, APP_PATH, "0.0.0.0" if network else "127.0.0.1", int(port))
                    st.rerun()
                except StudioError as exc:
                    show_error(exc)
        st.caption(t("From a terminal:"))
        st.code(f"studio demo {slug} --port 8502" + (" --host 0.0.0.0" if settings.protected else ""),
                language="bash")

with bundle_tab:
    st.caption(t("One archive with the recipe, its adapter, its knowledge base and sample questions, checked by "
                 "checksums. Import it on another studio's Projects page."))
    try:
        from studio.ui.bundle_panel import export_panel
    except ImportError:  # the bundle panel ships with the bundle feature
        export_panel = None
    if export_panel is not None:
        export_panel(project)

with api_tab:
    st.caption(t("Serve the recipe as an OpenAI-compatible endpoint, so any OpenAI client or tool can use it. "
                 "Prompt, examples and retrieval run in the studio's server."))
    st.code(f"studio serve {slug} --port 8000", language="bash")
    st.code('curl http://127.0.0.1:8000/v1/chat/completions -H "Content-Type: application/json" \\\n'
            f'  -d \'{{"model": "{settings.recipe}", "messages": [{{"role": "user", "content": "Hello"}}]}}\'',
            language="bash")
    st.caption(t("To answer many users at once, serve the base model and adapter with vLLM; the README shows how."))
