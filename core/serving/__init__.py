"""Serving a saved recipe outside the studio: an OpenAI-compatible HTTP endpoint (`studio serve`).

openai_api.py   the Starlette app (`create_app`): /v1/models and /v1/chat/completions, streaming included
"""
