"""Errors a user can cause. Their message is one sentence that says what to do; pages show it with st.error."""


class StudioError(Exception):
    """Base class: the message is meant for the user, not a traceback."""


class ProjectNotFoundError(StudioError):
    pass


class ProjectExistsError(StudioError):
    pass


class ModelLoadError(StudioError):
    pass


class EndpointError(StudioError):
    pass


class TemplateError(StudioError):
    pass


class DataImportError(StudioError):
    pass


class ContextOverflowError(StudioError):
    pass


class DocumentError(StudioError):
    """A document for the knowledge base could not be read (empty, unsupported, locked, corrupt, no text)."""


class TrainingError(StudioError):
    """A fine-tuning run cannot start or continue (data, method, memory, disk)."""
