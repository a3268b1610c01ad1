"""``comfy_extras.nodes_model_advanced``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes
from comfyui.sampling.model_sampling import LCM, X0, ModelSamplingDiscreteDistilled  # noqa: F401
from comfyui.sampling.model_sampling import rescale_zero_terminal_snr_sigmas  # noqa: F401

__getattr__ = node_classes(__name__, [
    'ModelSamplingDiscrete', 'ModelSamplingContinuousEDM', 'ModelSamplingContinuousV',
    'ModelSamplingStableCascade', 'ModelSamplingSD3', 'ModelSamplingAuraFlow', 'ModelSamplingFlux',
    'RescaleCFG', 'ModelComputeDtype',
])
