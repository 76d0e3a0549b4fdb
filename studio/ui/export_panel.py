"""The Fine-tune page's GGUF export: the form in the adapter's Export menu, then the job's progress and result."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.models.adapters import AdapterInfo
from core.workspace import Project
from studio.ui.i18n import t
from studio.ui.run_panel import job_progress
from studio.ui.state import saved_recipe


def gguf_export_form(project: Project, info: AdapterInfo, key: str) -> None:
    """Base + adapter merged into one GGUF file with an Ollama Modelfile, written by a background job."""
    from core.finetune import gguf_export
    from core.models.engine import llama_cpp_installed
    from core.models.gguf_write import LLAMA_CPP_QUANTIZATIONS, QUANTIZATIONS

    st.markdown("**" + t("For Ollama, LM Studio and llama.cpp (GGUF)") + "**")
    recipe, _ = saved_recipe(project)
    if recipe.model.kind not in ("embedded", "gguf"):
        st.caption(t("GGUF export writes models that were read from a GGUF file (the embedded model or a GGUF "
                     "source). For this model, save the merged folder and convert it with llama.cpp's "
                     "convert_hf_to_gguf.py."))
        return
    usable = [q for q in QUANTIZATIONS if q not in LLAMA_CPP_QUANTIZATIONS or llama_cpp_installed()]
    quantization = st.selectbox(t("Quantization"), usable, key=key + "gguf_quantization",
                                format_func=lambda q: t(QUANTIZATIONS[q]))
    running = (job := gguf_export.latest_job(project)) is not None and job.status().state == "running"
    if st.button(t("Export as GGUF"), key=key + "gguf", icon=":material/output:", disabled=running):
        gguf_export.start_job(project, recipe.with_changes(adapter=info.id), quantization)
        st.rerun()


def gguf_export_status(project: Project, key: str) -> None:
    """The latest GGUF export: its progress while it runs, then where it is and how to run it."""
    from core.finetune import gguf_export

    job = gguf_export.latest_job(project)
    if job is None:
        return
    status = job.status()
    if status.state == "running":
        st.caption(t("Exporting as GGUF"))
        job_progress(job, key + "gguf_cancel")
        return
    if status.state == "failed":
        st.error(t(status.error))
        return
    folder = next((e["folder"] for e in reversed(job.events()) if e.get("folder")), None)
    if status.state != "done" or folder is None or not Path(folder).exists():
        return
    with st.container(border=True):
        st.markdown(t("**GGUF export ready** in `{folder}`", folder=folder))
        st.code(f"cd {folder}\nollama create my-assistant -f Modelfile\nollama run my-assistant", language="bash")
        st.caption(t("The Evaluation page re-scores the file next to base + adapter (Exports): with 8-bit or 4-bit "
                     "weights the answers may drift a little, and the scores show how much."))
        st.download_button(t("Modelfile"), (Path(folder) / gguf_export.MODELFILE).read_bytes(),
                           file_name="Modelfile", key=key + "gguf_modelfile")
