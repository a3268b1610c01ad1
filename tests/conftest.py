"""Shared fixtures: every test runs against its own temporary workspace."""
import pytest


@pytest.fixture
def workspace(tmp_path):
    """A fresh ComfyUI workspace (models/, input/, output/, temp/, user/, custom_nodes/)."""
    from comfyui import paths

    paths.configure(base_directory=tmp_path, create_directories=True)
    yield tmp_path
    paths.configure(base_directory=None)
