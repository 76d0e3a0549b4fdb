"""All studio logic. Never imports streamlit, so every function can be called from tests, the CLI or a job."""
