"""All studio logic. Never imports streamlit, so every function can be called from tests, the CLI or a job."""

from core.secrets import install_log_redaction as _install_log_redaction

_install_log_redaction()  # every process running studio code (pages, CLI, jobs) keeps API keys out of its logs
