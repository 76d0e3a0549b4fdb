"""The demo: only a clean chat with one recipe version, dressed in the project's name, logo and colour."""

import time

import streamlit as st

from core.demo import check_password, load_settings, locked_out_message, login_throttle, logo_path, resolve_recipe
from core.errors import ProjectNotFoundError, StudioError
from studio.ui.chat_view import clear_history, conversation, history_key
from studio.ui.demo_state import active_demo, stop_presenting
from studio.ui.i18n import t
from studio.ui.state import workspace

demo = active_demo() or {}
try:
    project = workspace().get(demo.get("project", ""))
except ProjectNotFoundError:
    st.error(t("This demo's project is no longer there."))
    st.stop()
settings = load_settings(project)
if demo.get("recipe"):
    settings = settings.with_changes(recipe=demo["recipe"], version=demo.get("version"))
password_hash = demo.get("password_hash") or (settings.password_hash if demo.get("server") else "")

# Accent colour for the presenter's tab too (a served demo also gets it as Streamlit's theme colour).
st.html(f"<style>h1 {{ border-bottom: 4px solid {settings.primary_color}; padding-bottom: .3rem; }}</style>")
logo = logo_path(project, settings)
if logo is not None:
    st.logo(str(logo), size="large")
title_column, action_column = st.columns([5, 1], vertical_alignment="bottom")
title_column.title(settings.title or project.name)

if password_hash and not st.session_state.get("demo.unlocked"):
    throttle, client = login_throttle(), st.context.ip_address  # counted per address, across browser sessions
    with st.form("demo.login"):
        password = st.text_input(t("Password"), type="password")
        if st.form_submit_button(t("Enter"), type="primary"):
            wait = throttle.retry_after(client)
            if wait:
                st.error(t(locked_out_message(wait)))
            elif check_password(password, password_hash):
                throttle.succeeded(client)
                st.session_state["demo.unlocked"] = True
                st.rerun()
            else:
                throttle.failed(client)
                time.sleep(1.0)  # slows guessing
                st.error(t("Wrong password."))
    st.stop()

if settings.welcome:
    st.markdown(settings.welcome)
try:
    recipe, number = resolve_recipe(project, settings)
except StudioError as exc:
    st.error(t(exc.args[0]))
    st.stop()
key = f"demo.{project.slug}"
if action_column.button(t("New chat"), icon=":material/refresh:",
                        disabled=not st.session_state.get(history_key(key, number))):
    clear_history(key, number)
    st.rerun()
conversation(project, recipe, number, key, user="demo", sources=settings.show_sources, stats=False,
             sample_questions=settings.sample_questions)
if not demo.get("server"):
    st.divider()
    if st.button(t("Leave demo mode"), icon=":material/logout:"):
        stop_presenting()
        st.rerun()
