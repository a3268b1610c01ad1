"""ModelComputeDtype and the continuous-time model sampling patches of ComfyUI's
nodes_model_advanced (ModelSamplingContinuousEDM, ModelSamplingContinuousV; the discrete / flow
ones live in ``sampling``): the model is re-timed on a log-spaced sigma range with a chosen prediction
type (EDM models such as Playground v2.5, v-prediction continuous-time models)."""
from __future__ import annotations

from ._lazy import lazy

torch = lazy("torch")
msmod = lazy("comfyui.sampling.model_sampling")
latent_formats = lazy("comfyui.models.latent_formats")


def _sigma(default):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1000.0, "step": 0.001, "round": False})


class ModelSamplingContinuousEDM:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "sampling": (["v_prediction", "edm", "edm_playground_v2.5", "eps", "cosmos_rflow"],),
                             "sigma_max": _sigma(120.0), "sigma_min": _sigma(0.002)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"

    def patch(self, model, sampling, sigma_max, sigma_min):
        if sampling == "cosmos_rflow":
            raise ValueError("ModelSamplingContinuousEDM: 'cosmos_rflow' is the Cosmos models' sampling; "
                             "Cosmos is not a supported model family yet")
        prediction = {"eps": "eps", "v_prediction": "v_prediction", "edm": "edm",
                      "edm_playground_v2.5": "edm"}[sampling]
        sigma_data = 0.5 if prediction == "edm" else 1.0
        m = model.clone()
        config = getattr(model.model, "model_config", None)
        ms = msmod.continuous_model_sampling(msmod.ModelSamplingContinuousEDM, prediction, config, sigma_min,
                                             sigma_max, sigma_data)
        m.add_object_patch("model_sampling", ms)
        if sampling == "edm_playground_v2.5":
            m.add_object_patch("latent_format", latent_formats.SDXL_Playground_2_5())
        return (m,)


class ModelSamplingContinuousV:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "sampling": (["v_prediction"],),
                             "sigma_max": _sigma(500.0), "sigma_min": _sigma(0.03)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"

    def patch(self, model, sampling, sigma_max, sigma_min):
        m = model.clone()
        config = getattr(model.model, "model_config", None)
        ms = msmod.continuous_model_sampling(msmod.ModelSamplingContinuousV, "v_prediction", config, sigma_min,
                                             sigma_max, 1.0)
        m.add_object_patch("model_sampling", ms)
        return (m,)


class ModelComputeDtype:
    """The model computes in ``dtype`` (its weights are cast per layer as they are used);
    "default": in the dtype the loader chose."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "dtype": (["default", "fp32", "fp16", "bf16"],)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/debug/model"

    def patch(self, model, dtype):
        m = model.clone()
        if dtype != "default":
            m.set_model_compute_dtype({"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype])
        return (m,)


NODE_CLASS_MAPPINGS = {
    "ModelComputeDtype": ModelComputeDtype,
    "ModelSamplingContinuousEDM": ModelSamplingContinuousEDM,
    "ModelSamplingContinuousV": ModelSamplingContinuousV,
}
