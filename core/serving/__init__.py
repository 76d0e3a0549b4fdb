"""Serving a saved recipe outside the studio: an OpenAI-compatible HTTP endpoint (`studio serve`).

openai_api.py   the Starlette app (`create_app`): /v1/models and /v1/chat/completions, streaming included
guard.py        what a request must be before the app reads it: an allowed Host, a JSON body, at most 1 MB
"""
