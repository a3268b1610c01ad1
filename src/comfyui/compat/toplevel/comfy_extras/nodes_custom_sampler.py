"""``comfy_extras.nodes_custom_sampler``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes
from comfyui.sampling.noise import Noise_EmptyNoise, Noise_RandomNoise  # noqa: F401
from comfyui.sampling.samplers import Guider_Basic, Guider_DualCFG  # noqa: F401

__getattr__ = node_classes(__name__, [
    'SamplerCustom', 'BasicScheduler', 'KarrasScheduler', 'ExponentialScheduler', 'PolyexponentialScheduler',
    'LaplaceScheduler', 'VPScheduler', 'BetaSamplingScheduler', 'SDTurboScheduler', 'KSamplerSelect',
    'SamplerEulerAncestral', 'SamplerEulerAncestralCFGPP', 'SamplerLMS', 'SamplerDPMPP_3M_SDE',
    'SamplerDPMPP_2M_SDE', 'SamplerDPMPP_SDE', 'SamplerDPMPP_2S_Ancestral', 'SamplerDPMAdaptative',
    'SamplerER_SDE', 'SamplerSASolver', 'SplitSigmas', 'SplitSigmasDenoise', 'FlipSigmas', 'SetFirstSigma',
    'ExtendIntermediateSigmas', 'SamplingPercentToSigma', 'CFGGuider', 'DualCFGGuider', 'BasicGuider',
    'RandomNoise', 'DisableNoise', 'AddNoise', 'SamplerCustomAdvanced',
])
