"""Format readers behind `core.rag.parse.parse_document`: one module per family of formats.

Each reader is `read(data, name, warnings, **options) -> list[Section]`: `name` is the safe display name, and
notices for the user (encoding fallback, pages without text) are appended to `warnings` as `Msg`s. A reader
raises `DocumentError` when the file cannot be read at all. Heavy libraries are imported inside the readers.
"""
