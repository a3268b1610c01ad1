"""``comfy.ldm``: the network building blocks packs import.

``comfy.ldm.modules.*`` and ``comfy.ldm.util`` hold the blocks our models are built from (so
``isinstance`` checks on a loaded model's modules work); their constructors take our arguments,
not upstream's. Every other module of upstream's ``comfy/ldm`` (the model families this
implementation does not run: ``flux``, ``wan``, ``lightricks``, ``lumina`` ...) is importable,
and each name taken from it is a function or class that raises NotSupportedError when used, so
a pack that imports them at module level still loads its other nodes.
"""
import importlib.abc
import importlib.machinery
import sys
import types

from comfyui.compat import _unsupported

# upstream's comfy/ldm modules (dotted, without the "comfy.ldm." prefix)
_UPSTREAM_MODULES = frozenset("""
    ace ace.attention ace.lyric_encoder ace.model ace.vae ace.vae.autoencoder_dc ace.vae.music_dcae_pipeline
    ace.vae.music_log_mel ace.vae.music_vocoder audio audio.autoencoder audio.dit audio.embedders aura
    aura.mmdit cascade cascade.common cascade.controlnet cascade.stage_a cascade.stage_b cascade.stage_c
    cascade.stage_c_coder chroma chroma.layers chroma.model chroma_radiance chroma_radiance.layers
    chroma_radiance.model common_dit cosmos cosmos.blocks cosmos.cosmos_tokenizer
    cosmos.cosmos_tokenizer.layers3d cosmos.cosmos_tokenizer.patching cosmos.cosmos_tokenizer.utils
    cosmos.model cosmos.position_embedding cosmos.predict2 cosmos.vae flux flux.controlnet flux.layers
    flux.math flux.model flux.redux genmo genmo.joint_model genmo.joint_model.asymm_models_joint
    genmo.joint_model.layers genmo.joint_model.rope_mixed genmo.joint_model.temporal_rope
    genmo.joint_model.utils genmo.vae genmo.vae.model hidream hidream.model hunyuan3d hunyuan3d.model
    hunyuan3d.vae hunyuan3dv2_1 hunyuan3dv2_1.hunyuandit hunyuan_video hunyuan_video.model hunyuan_video.vae
    hunyuan_video.vae_refiner hydit hydit.attn_layers hydit.controlnet hydit.models hydit.poolers
    hydit.posemb_layers lightricks lightricks.model lightricks.symmetric_patchifier lightricks.vae
    lightricks.vae.causal_conv3d lightricks.vae.causal_video_autoencoder lightricks.vae.conv_nd_factory
    lightricks.vae.dual_conv3d lightricks.vae.pixel_norm lumina lumina.model mmaudio mmaudio.vae
    mmaudio.vae.activations mmaudio.vae.alias_free_torch mmaudio.vae.autoencoder mmaudio.vae.bigvgan
    mmaudio.vae.distributions mmaudio.vae.vae mmaudio.vae.vae_modules models models.autoencoder modules
    modules.attention modules.diffusionmodules modules.diffusionmodules.mmdit modules.diffusionmodules.model
    modules.diffusionmodules.openaimodel modules.diffusionmodules.upscaling modules.diffusionmodules.util
    modules.distributions modules.distributions.distributions modules.ema modules.encoders
    modules.encoders.noise_aug_modules modules.sub_quadratic_attention modules.temporal_ae omnigen
    omnigen.omnigen2 pixart pixart.blocks pixart.pixartms qwen_image qwen_image.controlnet qwen_image.model
    util wan wan.model wan.model_animate wan.vae wan.vae2_2
""".split())


class _UnsupportedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds upstream's ``comfy.ldm`` modules that have no file here (it sits last on
    ``sys.meta_path``, so our real modules are found first)."""

    def find_spec(self, fullname, path=None, target=None):
        prefix = __name__ + "."
        if fullname.startswith(prefix) and fullname[len(prefix):] in _UPSTREAM_MODULES:
            is_package = any(m.startswith(fullname[len(prefix):] + ".") for m in _UPSTREAM_MODULES)
            return importlib.machinery.ModuleSpec(fullname, self, is_package=is_package)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name, f"Upstream's {spec.name}: not implemented by comfyui.")
        if spec.submodule_search_locations is not None:
            module.__path__ = []
        module.__getattr__ = _any_name_unsupported(spec.name)
        module._comfyui_unsupported_module = True  # compat.uninstall() forgets it
        return module

    def exec_module(self, module):
        pass


def _any_name_unsupported(module_name: str):
    made: dict = {}

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in made:
            make = _unsupported.cls if name[:1].isupper() else _unsupported.function
            made[name] = make(f"{module_name}.{name}", "this model family is not implemented")
        return made[name]

    return __getattr__


if not any(isinstance(f, _UnsupportedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_UnsupportedModuleFinder())
