"""Workflow formats shared by the server, the clients and the CLI.

``convert``: a UI workflow (what the frontend saves) -> an API prompt (what the engine runs),
giving the same prompt as the official frontend's ``app.graphToPrompt()``.
"""
