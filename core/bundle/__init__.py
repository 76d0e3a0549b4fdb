"""Assistant bundles: one .zip with a recipe version and what it needs (adapter, knowledge base, few-shot examples,
sample questions), to move an assistant to another machine or share it. See layout.py for what a bundle holds."""

from core.bundle.export import export_bundle, sample_questions
from core.bundle.importer import import_bundle, model_warnings

__all__ = ["export_bundle", "import_bundle", "model_warnings", "sample_questions"]
