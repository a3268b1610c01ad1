"""Helpers for the built-in node pack tests."""
import pytest
import torch


@pytest.fixture
def gradient_image():
    """A [1, 4, 6, 3] image with distinct values per pixel and channel."""
    h, w = 4, 6
    y = torch.linspace(0, 1, h)[:, None].expand(h, w)
    x = torch.linspace(0, 1, w)[None, :].expand(h, w)
    return torch.stack([x, y, (x + y) / 2], dim=-1).unsqueeze(0).contiguous()
