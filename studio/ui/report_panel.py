"""Two download buttons for the one-page assistant report (core.report): HTML and PDF. The file is built only when
a button is pressed: Streamlit calls `data` then, on another thread (so the callables touch no st.*), and logs the
traceback of one that fails while the browser says the file could not be made."""

from __future__ import annotations

import streamlit as st

from core import report as reporting
from core.evaluate.runs import EvalRun
from core.recipe import Recipe
from core.workspace import Project
from studio.ui.i18n import language, t


def report_buttons(project: Project, run: EvalRun | None, recipe: Recipe, recipe_version: int | None, key: str,
                   metric: str | None = None) -> None:
    """'Download report (HTML)' and 'Download report (PDF)' side by side; the PDF one is disabled, with a sentence
    saying why, when this computer has no Unicode font."""
    chosen_language = language()

    def build() -> reporting.Report:
        return reporting.build_report(project, run, recipe, chosen_language, recipe_version=recipe_version,
                                      metric=metric)

    def html() -> str:
        return reporting.render_html(build())

    def pdf() -> bytes:
        return reporting.render_pdf(build())

    name = f"report-{project.slug}" + (f"-{run.id}" if run is not None else "")
    font = reporting.pdf_font_found()
    about = t("A one-page summary for people who do not use the studio: the scoreboard, sample answers with "
              "their sources, the recipe and the data.")
    left, right = st.columns(2)
    left.download_button(t("Download report (HTML)"), html, file_name=name + ".html", mime="text/html",
                         icon=":material/description:", key=key + "report_html", help=about, on_click="ignore")
    right.download_button(t("Download report (PDF)"), pdf, file_name=name + ".pdf",
                          mime="application/pdf", icon=":material/picture_as_pdf:", key=key + "report_pdf",
                          help=about, on_click="ignore", disabled=not font)
    if not font:
        st.caption(t("No Unicode font was found on this computer for the PDF: download the HTML report and print "
                     "it to PDF from the browser."))
