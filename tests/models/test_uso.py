"""Flux USO (a model patch): the style projector loaded from its file layout against the formula,
Flux with the style tokens against diffusers' FluxTransformer2DModel given the same tokens after
its text projection, and USOStyleReference's refusals."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from comfyui.models import model_patch
from comfyui.models.flux import uso

from . import flux_fixtures as fx
from . import uso_fixtures
from .test_flux import _ids, _ours, _pack, _unpack

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def projector(tmp_path_factory):
    sd = uso_fixtures.projector_sd(seed=2, siglip_tokens=30, style_tokens=6, siglip_width=24, hidden=64)
    path = tmp_path_factory.mktemp("patches") / "uso-flux1-projector-v1.safetensors"
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}, path)
    return model_patch.load_model_patch(str(path)), {k: v.to(torch.bfloat16).float() for k, v in sd.items()}


def formula(sd, low, mid, high):
    out = []
    for depth, h in (("high", high), ("mid", mid), ("low", low)):
        p = f"feature_embedder.{depth}_"
        tokens = F.silu(h.transpose(1, 2) @ sd[p + "embedding_linear.0.weight"].T
                        + sd[p + "embedding_linear.0.bias"]).transpose(1, 2)
        tokens = F.layer_norm(tokens, (tokens.shape[-1],), sd[p + "layer_norm.weight"], sd[p + "layer_norm.bias"])
        out.append(tokens @ sd[p + "projection.weight"].T + sd[p + "projection.bias"])
    return torch.cat(out, dim=1)


def test_projector_matches_the_formula(projector):
    patcher, sd = projector
    assert patcher.model.cfg == {"siglip_tokens": 30, "style_tokens": 6, "siglip_width": 24, "hidden": 64}
    g = torch.Generator().manual_seed(0)
    low, mid, high = (torch.randn(2, 30, 24, generator=g) for _ in range(3))
    with torch.no_grad():
        got = patcher.model(low, mid, high)
    assert got.shape == (2, 18, 64)
    torch.testing.assert_close(got, formula(sd, low, mid, high), atol=1e-5, rtol=1e-5)


def test_flux_with_style_tokens_matches_diffusers(projector):
    patcher, _ = projector
    dm = fx.diffusers_flux(seed=4, depth=2, depth_single=2)
    ours = _ours(dm)
    g = torch.Generator().manual_seed(1)
    h, w, t = 6, 8, 5
    x, ctx, pooled = torch.randn(1, 16, h, w, generator=g), torch.randn(1, t, 32, generator=g), torch.randn(1, 24, generator=g)
    features = tuple(torch.randn(1, 30, 24, generator=g) for _ in range(3))
    patch = uso.USOStylePatch(patcher, features)
    with torch.no_grad():
        style = patcher.model(*features)
        got = ours(x, torch.tensor([0.6]), ctx, y=pooled, guidance=torch.tensor([3.5]),
                   transformer_options={"patches": {"post_input": [patch]}})
        plain = ours(x, torch.tensor([0.6]), ctx, y=pooled, guidance=torch.tensor([3.5]))
        # diffusers: the style tokens put before its projected text tokens, with text ids (0, 0, 0)
        hook = dm.context_embedder.register_forward_hook(lambda mod, inp, out: torch.cat((style, out), dim=1))
        try:
            ref = dm(hidden_states=_pack(x), encoder_hidden_states=ctx, pooled_projections=pooled,
                     timestep=torch.tensor([0.6]), img_ids=_ids(h, w), txt_ids=torch.zeros(t + style.shape[1], 3),
                     guidance=torch.tensor([3.5])).sample
        finally:
            hook.remove()
    assert (got - plain).abs().max() > 1e-2
    torch.testing.assert_close(got, _unpack(ref, h, w), atol=2e-5, rtol=1e-5)


def test_style_reference_refusals(projector):
    from comfyui.nodes.builtin.model_patch import USOStyleReference
    patcher, _ = projector
    shallow = {"all_hidden_states": torch.zeros(1, 3, 30, 24), "penultimate_hidden_states": torch.zeros(1, 30, 24)}
    with pytest.raises(ValueError, match="at least 20 layers"):
        uso.siglip_features(shallow)

    class NotAPatch:
        model = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="not a USO projector"):
        USOStyleReference().apply_patch(None, NotAPatch(), shallow)
