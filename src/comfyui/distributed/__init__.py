"""Frontends and workers on RabbitMQ (docs/distributed.md): messages.py (the versioned JSON
messages and their published schema), broker.py (queues and exchanges), store.py (the shared
job store), worker.py (``comfyui-worker``), frontend.py (``comfyui --distributed-queue-frontend``)."""
