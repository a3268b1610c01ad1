"""The typed schema API's ``io`` namespace (ComfyUI's ``comfy_api.latest.io``).

A node is a ``ComfyNode`` subclass with two classmethods: ``define_schema()`` returning a
``Schema`` and ``execute(**inputs)`` returning a ``NodeOutput``. Inputs and outputs are declared
with the io types (``Int.Input("steps", default=20)``, ``Image.Output()``, ...). The adapter in
``adapter.py`` turns a ComfyNode class into a ``NodeDef``; this module only holds the authoring
surface and the object_info pieces each declaration contributes.

Torch is not imported here: the ``Type`` hints of tensor types are documentation only.
"""
from __future__ import annotations

import copy
import inspect
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable, Literal


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def prune_dict(d: dict) -> dict:
    """Drop the keys whose value is None."""
    return {k: v for k, v in d.items() if v is not None}


class classproperty:
    """A read-only property evaluated on the class (``Node.RETURN_TYPES``)."""

    def __init__(self, fget: Callable[[type], Any]):
        self.fget = fget
        self.__doc__ = getattr(fget, "__doc__", None)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self.fget(owner if owner is not None else type(instance))


def is_class(obj: Any) -> bool:
    return isinstance(obj, type)


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"
    gradient_slider = "gradientslider"


class ControlAfterGenerate(str, Enum):
    fixed = "fixed"
    increment = "increment"
    decrement = "decrement"
    randomize = "randomize"


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


class RemoteOptions:
    """A combo whose options the frontend fetches from ``route``."""

    def __init__(self, route: str, refresh_button: bool, control_after_refresh: Literal["first", "last"] = "first",
                 timeout: int | None = None, max_retries: int | None = None, refresh: int | None = None):
        self.route = route
        self.refresh_button = refresh_button
        self.control_after_refresh = control_after_refresh
        self.timeout = timeout
        self.max_retries = max_retries
        self.refresh = refresh

    def as_dict(self) -> dict:
        return prune_dict({
            "route": self.route,
            "refresh_button": self.refresh_button,
            "control_after_refresh": self.control_after_refresh,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "refresh": self.refresh,
        })


class RemoteItemSchema:
    """How the frontend maps remote response objects to rich dropdown items."""

    def __init__(self, value_field: str, label_field: str, preview_url_field: str | None = None,
                 preview_type: Literal["image", "video", "audio"] = "image", description_field: str | None = None,
                 search_fields: list[str] | None = None):
        if preview_type not in ("image", "video", "audio"):
            raise ValueError(f"RemoteItemSchema: preview_type must be 'image', 'video' or 'audio', got {preview_type!r}")
        self.value_field = value_field
        self.label_field = label_field
        self.preview_url_field = preview_url_field
        self.preview_type = preview_type
        self.description_field = description_field
        self.search_fields = search_fields

    def as_dict(self) -> dict:
        return prune_dict({
            "value_field": self.value_field,
            "label_field": self.label_field,
            "preview_url_field": self.preview_url_field,
            "preview_type": self.preview_type,
            "description_field": self.description_field,
            "search_fields": self.search_fields,
        })


class RemoteComboOptions:
    """A rich remote combo (previews, search); used with ``Combo.Input(remote_combo=...)``."""

    def __init__(self, route: str, item_schema: RemoteItemSchema, refresh_button: bool = True,
                 auto_select: Literal["first", "last"] | None = None, timeout: int | None = None,
                 max_retries: int | None = None, refresh: int | None = None, response_key: str | None = None):
        if not route.startswith("/"):
            raise ValueError(f"RemoteComboOptions: route must start with '/', got {route!r}")
        if auto_select not in (None, "first", "last"):
            raise ValueError(f"RemoteComboOptions: auto_select must be 'first', 'last' or None, got {auto_select!r}")
        self.route = route
        self.item_schema = item_schema
        self.refresh_button = refresh_button
        self.auto_select = auto_select
        self.timeout = timeout
        self.max_retries = max_retries
        self.refresh = refresh
        self.response_key = response_key

    def as_dict(self) -> dict:
        return prune_dict({
            "route": self.route,
            "item_schema": self.item_schema.as_dict(),
            "refresh_button": self.refresh_button,
            "auto_select": self.auto_select,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "refresh": self.refresh,
            "response_key": self.response_key,
        })


# --------------------------------------------------------------------------------------------
# inputs and outputs
# --------------------------------------------------------------------------------------------

class _IO:
    """Base of Input / Output declarations. ``Parent`` is the io type class they belong to."""

    Parent: Any = None

    def validate(self) -> None:
        pass

    @property
    def io_type(self) -> str:
        return self.Parent.io_type

    @property
    def Type(self) -> Any:  # noqa: N802 - ComfyUI's name
        return self.Parent.Type


class Input(_IO):
    """An input socket (and, for widget types, its widget)."""

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,  # noqa: A002
                 tooltip: str | None = None, lazy: bool | None = None, extra_dict: dict | None = None,
                 raw_link: bool | None = None, advanced: bool | None = None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict if extra_dict is not None else {}
        self.rawLink = raw_link
        self.advanced = advanced

    def as_dict(self) -> dict:
        return prune_dict({
            "display_name": self.display_name,
            "optional": self.optional,
            "tooltip": self.tooltip,
            "lazy": self.lazy,
            "rawLink": self.rawLink,
            "advanced": self.advanced,
        }) | prune_dict(self.extra_dict)

    def get_io_type(self) -> str:
        return self.io_type

    def get_all(self) -> list["Input"]:
        return [self]

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({self.id!r})"


class WidgetInput(Input):
    """An input that has a widget (INT, FLOAT, STRING, BOOLEAN, COMBO, ...)."""

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,  # noqa: A002
                 tooltip: str | None = None, lazy: bool | None = None, default: Any = None,
                 socketless: bool | None = None, widget_type: str | None = None, force_input: bool | None = None,
                 extra_dict: dict | None = None, raw_link: bool | None = None, advanced: bool | None = None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link, advanced)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def as_dict(self) -> dict:
        return super().as_dict() | prune_dict({
            "default": self.default,
            "socketless": self.socketless,
            "widgetType": self.widget_type,
            "forceInput": self.force_input,
        })

    def get_io_type(self) -> str:
        return self.widget_type if self.widget_type is not None else super().get_io_type()


class Output(_IO):
    """An output socket."""

    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,  # noqa: A002
                 is_output_list: bool = False):
        self.id = id
        self.display_name = display_name if display_name else id
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def as_dict(self) -> dict:
        return prune_dict({
            "display_name": self.display_name if self.display_name else self.id,
            "tooltip": self.tooltip,
            "is_output_list": self.is_output_list,
        })

    def get_io_type(self) -> str:
        return self.io_type

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({self.id!r})"


class _ComfyType:
    """Base of the io types. ``io_type`` is the type string in object_info."""

    Type: Any = Any
    io_type: str | None = None


class ComfyTypeI(_ComfyType):
    """An io type that only has inputs."""

    class Input(Input):
        pass


class ComfyTypeIO(ComfyTypeI):
    """An io type with inputs and outputs."""

    class Output(Output):
        pass


def comfytype(io_type: str, **_unused: Any):
    """Class decorator: bind ``io_type`` to a type class and give it its own Input/Output classes.

    The nested Input/Output are subclassed so that each type's declarations know their type
    (``Parent``) without touching the classes they inherit from.
    """

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, _ComfyType)):
            namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            cls = type(cls.__name__, (cls, ComfyTypeIO), namespace)
        cls.io_type = io_type
        for attr in ("Input", "Output"):
            base = getattr(cls, attr, None)
            if base is None:
                continue
            bound = type(attr, (base,), {
                "Parent": cls,
                "__module__": cls.__module__,
                "__qualname__": f"{cls.__qualname__}.{attr}",
                "__doc__": base.__doc__,
            })
            setattr(cls, attr, bound)
        return cls

    return decorator


def Custom(io_type: str) -> type[ComfyTypeIO]:  # noqa: N802 - ComfyUI's name
    """An io type for a custom type string (``io.Custom("MY_TYPE").Input("x")``)."""

    @comfytype(io_type=io_type)
    class CustomComfyType(ComfyTypeIO):
        pass

    CustomComfyType.__name__ = CustomComfyType.__qualname__ = f"Custom[{io_type}]"
    return CustomComfyType


# ---- widget types --------------------------------------------------------------------------

@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    Type = bool

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,  # noqa: A002
                     tooltip: str | None = None, lazy: bool | None = None, default: bool | None = None,
                     label_on: str | None = None, label_off: str | None = None, socketless: bool | None = None,
                     force_input: bool | None = None, extra_dict: dict | None = None, raw_link: bool | None = None,
                     advanced: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link, advanced)
            self.label_on = label_on
            self.label_off = label_off

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({"label_on": self.label_on, "label_off": self.label_off})


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    Type = int

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,  # noqa: A002
                     tooltip: str | None = None, lazy: bool | None = None, default: int | None = None,
                     min: int | None = None, max: int | None = None, step: int | None = None,  # noqa: A002
                     control_after_generate: bool | ControlAfterGenerate | None = None,
                     display_mode: NumberDisplay | None = None, socketless: bool | None = None,
                     force_input: bool | None = None, extra_dict: dict | None = None, raw_link: bool | None = None,
                     advanced: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link, advanced)
            self.min = min
            self.max = max
            self.step = step
            self.control_after_generate = control_after_generate
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({
                "min": self.min,
                "max": self.max,
                "step": self.step,
                "control_after_generate": _enum_value(self.control_after_generate),
                "display": _enum_value(self.display_mode),
            })


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    Type = float

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,  # noqa: A002
                     tooltip: str | None = None, lazy: bool | None = None, default: float | None = None,
                     min: float | None = None, max: float | None = None, step: float | None = None,  # noqa: A002
                     round: float | None = None, display_mode: NumberDisplay | None = None,  # noqa: A002
                     gradient_stops: list | None = None, socketless: bool | None = None,
                     force_input: bool | None = None, extra_dict: dict | None = None, raw_link: bool | None = None,
                     advanced: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link, advanced)
            self.min = min
            self.max = max
            self.step = step
            self.round = round
            self.display_mode = display_mode
            self.gradient_stops = gradient_stops

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({
                "min": self.min,
                "max": self.max,
                "step": self.step,
                "round": self.round,
                "display": _enum_value(self.display_mode),
                "gradient_stops": self.gradient_stops,
            })


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,  # noqa: A002
                     tooltip: str | None = None, lazy: bool | None = None, multiline: bool = False,
                     placeholder: str | None = None, default: str | None = None, dynamic_prompts: bool | None = None,
                     socketless: bool | None = None, force_input: bool | None = None, extra_dict: dict | None = None,
                     raw_link: bool | None = None, advanced: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link, advanced)
            self.multiline = multiline
            self.placeholder = placeholder
            self.dynamic_prompts = dynamic_prompts

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({
                "multiline": self.multiline,
                "placeholder": self.placeholder,
                "dynamicPrompts": self.dynamic_prompts,
            })


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        """A dropdown. ``options`` may be a list or an Enum class (its values are used)."""

        def __init__(self, id: str, options: list | type[Enum] | None = None,  # noqa: A002
                     display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                     lazy: bool | None = None, default: Any = None,
                     control_after_generate: bool | ControlAfterGenerate | None = None,
                     upload: UploadType | None = None, image_folder: FolderType | None = None,
                     remote: RemoteOptions | None = None, remote_combo: RemoteComboOptions | None = None,
                     socketless: bool | None = None, extra_dict: dict | None = None, raw_link: bool | None = None,
                     advanced: bool | None = None):
            if remote is not None and remote_combo is not None:
                raise ValueError("Combo.Input: pass either 'remote' or 'remote_combo', not both.")
            if options is not None and remote_combo is not None:
                raise ValueError("Combo.Input: pass either 'options' or 'remote_combo', not both.")
            if isinstance(options, type) and issubclass(options, Enum):
                options = [member.value for member in options]
            super().__init__(id, display_name, optional, tooltip, lazy, _enum_value(default), socketless, None, None,
                             extra_dict, raw_link, advanced)
            self.multiselect = False
            self.options = list(options) if options is not None else None
            self.control_after_generate = control_after_generate
            self.upload = upload
            self.image_folder = image_folder
            self.remote = remote
            self.remote_combo = remote_combo

        def as_dict(self) -> dict:
            upload = {_enum_value(self.upload): True} if self.upload is not None else {}
            return super().as_dict() | prune_dict({
                "multiselect": self.multiselect,
                "options": self.options,
                "control_after_generate": _enum_value(self.control_after_generate),
                **upload,
                "image_folder": _enum_value(self.image_folder),
                "remote": self.remote.as_dict() if self.remote else None,
                "remote_combo": self.remote_combo.as_dict() if self.remote_combo else None,
            })

    class Output(Output):
        def __init__(self, id: str | None = None, display_name: str | None = None,  # noqa: A002
                     options: list | None = None, tooltip: str | None = None, is_output_list: bool = False):
            super().__init__(id, display_name, tooltip, is_output_list)
            self.options = options if options is not None else []


@comfytype(io_type="COMBO")
class MultiCombo(ComfyTypeI):
    """A dropdown where several options can be selected; the value is a list."""

    Type = list

    class Input(Combo.Input):
        def __init__(self, id: str, options: list, display_name: str | None = None, optional: bool = False,  # noqa: A002
                     tooltip: str | None = None, lazy: bool | None = None, default: list | None = None,
                     placeholder: str | None = None, chip: bool | None = None,
                     control_after_generate: bool | ControlAfterGenerate | None = None,
                     socketless: bool | None = None, extra_dict: dict | None = None, raw_link: bool | None = None,
                     advanced: bool | None = None):
            super().__init__(id, options, display_name, optional, tooltip, lazy, default, control_after_generate,
                             socketless=socketless, extra_dict=extra_dict, raw_link=raw_link, advanced=advanced)
            self.multiselect = True
            self.placeholder = placeholder
            self.chip = chip

        def as_dict(self) -> dict:
            return super().as_dict() | {
                "multi_select": prune_dict({"placeholder": self.placeholder, "chip": self.chip}),
            }


@comfytype(io_type="WEBCAM")
class Webcam(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,  # noqa: A002
                     tooltip: str | None = None, lazy: bool | None = None, default: str | None = None,
                     socketless: bool | None = None, extra_dict: dict | None = None, raw_link: bool | None = None,
                     advanced: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, None,
                             extra_dict, raw_link, advanced)


def _socketless_widget(io_type: str, default_factory: Callable[[], Any] | None = None, doc: str = "") -> type:
    """Widget types that are pure UI state (COLOR, BOUNDING_BOX, ...): socketless by default."""

    class _Type(ComfyTypeIO):
        class Input(WidgetInput):
            def __init__(self, id: str, display_name: str | None = None, optional: bool = False,  # noqa: A002
                         tooltip: str | None = None, socketless: bool = True, default: Any = None,
                         advanced: bool | None = None, force_input: bool | None = None):
                if default is None and default_factory is not None:
                    default = default_factory()
                super().__init__(id, display_name, optional, tooltip, None, default, socketless, None, force_input,
                                 None, None, advanced)

    _Type.__doc__ = doc
    return comfytype(io_type=io_type)(_Type)


Color = _socketless_widget("COLOR", lambda: "#ffffff", "A colour picker; the value is '#rrggbb'.")
Colors = _socketless_widget("COLORS", list, "A list of colours.")
BoundingBox = _socketless_widget("BOUNDING_BOX", lambda: {"x": 0, "y": 0, "width": 512, "height": 512},
                                 "A box {x, y, width, height}.")
BoundingBoxes = _socketless_widget("BOUNDING_BOXES", list, "A list of boxes.")
ImageCompare = _socketless_widget("IMAGECOMPARE", None, "An image comparison widget.")
Compositor = _socketless_widget("COMPOSITOR", dict, "Layer compositor state.")
CameraInfoState = _socketless_widget("CAMERA_INFO_STATE", None, "3D camera widget state.")
for _t, _n in ((Color, "Color"), (Colors, "Colors"), (BoundingBox, "BoundingBox"), (BoundingBoxes, "BoundingBoxes"),
               (ImageCompare, "ImageCompare"), (Compositor, "Compositor"), (CameraInfoState, "CameraInfoState")):
    _t.__name__ = _t.__qualname__ = _n
    _t.Input.__qualname__ = f"{_n}.Input"
    if hasattr(_t, "Output"):
        _t.Output.__qualname__ = f"{_n}.Output"


# ---- socket-only types ---------------------------------------------------------------------

def _socket_type(name: str, io_type: str, doc: str = "") -> type:
    cls = type(name, (ComfyTypeIO,), {"__doc__": doc or f"The {io_type} type.", "__module__": __name__,
                                      "__qualname__": name})
    return comfytype(io_type=io_type)(cls)


Image = _socket_type("Image", "IMAGE", "float32 tensor [B,H,W,C] in 0..1.")
Mask = _socket_type("Mask", "MASK", "float32 tensor [B,H,W].")
Latent = _socket_type("Latent", "LATENT", "dict with 'samples' [B,C,H,W] and optional 'noise_mask', 'batch_index'.")
Conditioning = _socket_type("Conditioning", "CONDITIONING", "list of [tensor, dict].")
Sampler = _socket_type("Sampler", "SAMPLER")
Sigmas = _socket_type("Sigmas", "SIGMAS")
Noise = _socket_type("Noise", "NOISE")
Guider = _socket_type("Guider", "GUIDER")
Clip = _socket_type("Clip", "CLIP")
ControlNet = _socket_type("ControlNet", "CONTROL_NET")
Vae = _socket_type("Vae", "VAE")
Model = _socket_type("Model", "MODEL")
ModelPatch = _socket_type("ModelPatch", "MODEL_PATCH")
ClipVision = _socket_type("ClipVision", "CLIP_VISION")
ClipVisionOutput = _socket_type("ClipVisionOutput", "CLIP_VISION_OUTPUT")
BackgroundRemoval = _socket_type("BackgroundRemoval", "BACKGROUND_REMOVAL")
StyleModel = _socket_type("StyleModel", "STYLE_MODEL")
Gligen = _socket_type("Gligen", "GLIGEN")
UpscaleModel = _socket_type("UpscaleModel", "UPSCALE_MODEL")
LatentUpscaleModel = _socket_type("LatentUpscaleModel", "LATENT_UPSCALE_MODEL")
Audio = _socket_type("Audio", "AUDIO", "dict with 'waveform' [B,C,T] and 'sample_rate'.")
Video = _socket_type("Video", "VIDEO")
SVG = _socket_type("SVG", "SVG")
LoraModel = _socket_type("LoraModel", "LORA_MODEL")
LossMap = _socket_type("LossMap", "LOSS_MAP")
Voxel = _socket_type("Voxel", "VOXEL")
Mesh = _socket_type("Mesh", "MESH")
Splat = _socket_type("Splat", "SPLAT")
File3DAny = _socket_type("File3DAny", "FILE_3D")
File3DGLB = _socket_type("File3DGLB", "FILE_3D_GLB")
File3DGLTF = _socket_type("File3DGLTF", "FILE_3D_GLTF")
File3DFBX = _socket_type("File3DFBX", "FILE_3D_FBX")
File3DOBJ = _socket_type("File3DOBJ", "FILE_3D_OBJ")
File3DSTL = _socket_type("File3DSTL", "FILE_3D_STL")
File3DUSDZ = _socket_type("File3DUSDZ", "FILE_3D_USDZ")
File3DPLY = _socket_type("File3DPLY", "FILE_3D_PLY")
File3DSPLAT = _socket_type("File3DSPLAT", "FILE_3D_SPLAT")
File3DSPZ = _socket_type("File3DSPZ", "FILE_3D_SPZ")
File3DKSPLAT = _socket_type("File3DKSPLAT", "FILE_3D_KSPLAT")
File3DSplatAny = _socket_type("File3DSplatAny", "FILE_3D_SPLAT_ANY")
File3DPointCloudAny = _socket_type("File3DPointCloudAny", "FILE_3D_POINT_CLOUD_ANY")
Hooks = _socket_type("Hooks", "HOOKS")
HookKeyframes = _socket_type("HookKeyframes", "HOOK_KEYFRAMES")
TimestepsRange = _socket_type("TimestepsRange", "TIMESTEPS_RANGE")
LatentOperation = _socket_type("LatentOperation", "LATENT_OPERATION")
FlowControl = _socket_type("FlowControl", "FLOW_CONTROL")
Accumulation = _socket_type("Accumulation", "ACCUMULATION")
Load3DCamera = _socket_type("Load3DCamera", "LOAD3D_CAMERA")
Load3D = _socket_type("Load3D", "LOAD_3D")
Load3DAnimation = _socket_type("Load3DAnimation", "LOAD_3D_ANIMATION")
Photomaker = _socket_type("Photomaker", "PHOTOMAKER")
Point = _socket_type("Point", "POINT")
FaceAnalysis = _socket_type("FaceAnalysis", "FACE_ANALYSIS")
BBOX = _socket_type("BBOX", "BBOX")
SEGS = _socket_type("SEGS", "SEGS")
AudioEncoder = _socket_type("AudioEncoder", "AUDIO_ENCODER")
AudioEncoderOutput = _socket_type("AudioEncoderOutput", "AUDIO_ENCODER_OUTPUT")
Tracks = _socket_type("Tracks", "TRACKS")
WanCameraEmbedding = _socket_type("WanCameraEmbedding", "WAN_CAMERA_EMBEDDING")
Histogram = _socket_type("Histogram", "HISTOGRAM")
Layers = _socket_type("Layers", "LAYERS")
Dict = _socket_type("Dict", "DICT")
Array = _socket_type("Array", "ARRAY")
AnyType = _socket_type("AnyType", "*", "Matches any type.")


# ---- multi-type and template types ---------------------------------------------------------

class MultiType:
    """An input that accepts several types: ``MultiType.Input("x", types=[Image, Mask])``.

    ``id`` may itself be an Input; that input then provides the widget and its options.
    """

    Type = Any
    io_type = "COMFY_MULTITYPED_V3"

    class Input(Input):
        def __init__(self, id: str | Input, types: list, display_name: str | None = None,  # noqa: A002
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     extra_dict: dict | None = None, raw_link: bool | None = None, advanced: bool | None = None):
            self.input_override: Input | None = None
            if isinstance(id, Input):
                override = copy.copy(id)
                optional = True if id.optional is True else optional
                tooltip = id.tooltip if id.tooltip is not None else tooltip
                display_name = id.display_name if id.display_name is not None else display_name
                lazy = id.lazy if id.lazy is not None else lazy
                if isinstance(override, WidgetInput):
                    override.widget_type = override.get_io_type()
                self.input_override = override
                id = id.id
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link, advanced)
            self._io_types = list(types)

        @property
        def io_types(self) -> list:
            return [t if is_class(t) else type(t) for t in self._io_types]

        def get_io_type(self) -> str:
            names = [t.io_type for t in self.io_types]
            if self.input_override is not None:
                names.insert(0, self.input_override.get_io_type())
            return ",".join(dict.fromkeys(names))

        def as_dict(self) -> dict:
            if self.input_override is not None:
                return self.input_override.as_dict() | super().as_dict()
            return super().as_dict()


@comfytype(io_type="COMFY_MATCHTYPE_V3")
class MatchType(ComfyTypeIO):
    """Inputs and outputs that share a template take the same (frontend-resolved) type."""

    class Template:
        def __init__(self, template_id: str, allowed_types: Any = None):
            if allowed_types is None:
                allowed_types = [AnyType]
            elif not isinstance(allowed_types, (list, tuple)):
                allowed_types = [allowed_types]
            for t in allowed_types:
                ok = issubclass(t, _ComfyType) if is_class(t) else isinstance(t, _ComfyType)
                if not ok:
                    raise ValueError(f"MatchType.Template allowed_types must be io types, got {t!r}")
            self.template_id = template_id
            self.allowed_types = list(allowed_types)

        def as_dict(self) -> dict:
            return {"template_id": self.template_id, "allowed_types": ",".join(t.io_type for t in self.allowed_types)}

    class Input(Input):
        def __init__(self, id: str, template: "MatchType.Template", display_name: str | None = None,  # noqa: A002
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     extra_dict: dict | None = None, raw_link: bool | None = None, advanced: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link, advanced)
            self.template = template

        def as_dict(self) -> dict:
            return super().as_dict() | {"template": self.template.as_dict()}

    class Output(Output):
        def __init__(self, template: "MatchType.Template", id: str | None = None,  # noqa: A002
                     display_name: str | None = None, tooltip: str | None = None, is_output_list: bool = False):
            if not id and not display_name:
                display_name = "MATCHTYPE"
            super().__init__(id, display_name, tooltip, is_output_list)
            self.template = template

        def as_dict(self) -> dict:
            return super().as_dict() | {"template": self.template.as_dict()}


# ---- dynamic inputs ------------------------------------------------------------------------
# A dynamic input's sub-inputs arrive in the prompt under dotted names ("<id>.<sub id>");
# the adapter lists them as optional inputs for execution and nests them back into a dict
# (``{"<id>": {"<sub id>": value}}``) before calling execute().

class DynamicInput(Input):
    """Base of inputs whose sub-inputs depend on the prompt (Autogrow, DynamicCombo, DynamicSlot)."""

    def sub_inputs(self) -> list[tuple[str, Input, bool]]:
        """Every possible sub-input as (name relative to this input, input, required-when-present)."""
        raise NotImplementedError


class DynamicOutput(Output):
    pass


def create_input_dict_v1(inputs: list[Input]) -> dict:
    """Inputs in object_info form: {"required": {id: (type, options)}, "optional": {...}}."""
    result: dict[str, dict] = {"required": {}}
    for inp in inputs:
        options = inp.as_dict()
        options.pop("optional", None)
        result.setdefault("optional" if inp.optional else "required", {})[inp.id] = (inp.get_io_type(), options)
    return result


@comfytype(io_type="COMFY_AUTOGROW_V3")
class Autogrow(ComfyTypeI):
    """A growing set of copies of one template input (``image0``, ``image1``, ...).

    execute() receives ``{"<id>": {"image0": ..., "image1": ...}}`` with the connected copies.
    """

    Type = dict
    _MaxNames = 100

    class _AutogrowTemplate:
        def __init__(self, input: Input):  # noqa: A002
            if isinstance(input, DynamicInput):
                raise ValueError("Autogrow template input cannot be a dynamic input")
            self.input = copy.copy(input)
            if isinstance(self.input, WidgetInput):
                self.input.force_input = True
            self.names: list[str] = []
            self.min = 1

        def get_all(self) -> list[Input]:
            result = []
            for name in self.names:
                new = copy.copy(self.input)
                new.id = name
                result.append(new)
            return result

        def as_dict(self) -> dict:
            return {"input": create_input_dict_v1([self.input])}

        def validate(self) -> None:
            self.input.validate()

    class TemplatePrefix(_AutogrowTemplate):
        def __init__(self, input: Input, prefix: str, min: int = 1, max: int = 10):  # noqa: A002
            super().__init__(input)
            if min < 0 or max < 1 or max > Autogrow._MaxNames:
                raise ValueError(f"Autogrow.TemplatePrefix: need 0 <= min, 1 <= max <= {Autogrow._MaxNames}")
            self.prefix = prefix
            self.min = min
            self.max = max
            self.names = [f"{prefix}{i}" for i in range(max)]

        def as_dict(self) -> dict:
            return super().as_dict() | {"prefix": self.prefix, "min": self.min, "max": self.max}

    class TemplateNames(_AutogrowTemplate):
        def __init__(self, input: Input, names: list[str], min: int = 1):  # noqa: A002
            super().__init__(input)
            if min < 0:
                raise ValueError("Autogrow.TemplateNames: min must be >= 0")
            self.names = list(names)[:Autogrow._MaxNames]
            self.min = min

        def as_dict(self) -> dict:
            return super().as_dict() | {"names": self.names, "min": self.min}

    class Input(DynamicInput):
        def __init__(self, id: str, template: "Autogrow._AutogrowTemplate", display_name: str | None = None,  # noqa: A002
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     extra_dict: dict | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            self.template = template

        def as_dict(self) -> dict:
            return super().as_dict() | {"template": self.template.as_dict()}

        def get_all(self) -> list[Input]:
            return [self] + self.template.get_all()

        def validate(self) -> None:
            self.template.validate()

        def sub_inputs(self) -> list[tuple[str, Input, bool]]:
            required = not self.template.input.optional and not self.optional
            return [(inp.id, inp, required and i < self.template.min) for i, inp in enumerate(self.template.get_all())]


@comfytype(io_type="COMFY_DYNAMICCOMBO_V3")
class DynamicCombo(ComfyTypeI):
    """A combo whose selected option adds its own inputs.

    execute() receives ``{"<id>": {"<id>": selected key, <that option's inputs>...}}``.
    """

    Type = dict

    class Option:
        def __init__(self, key: str, inputs: list[Input]):
            self.key = key
            self.inputs = list(inputs)

        def as_dict(self) -> dict:
            return {"key": self.key, "inputs": create_input_dict_v1(self.inputs)}

    class Input(DynamicInput):
        def __init__(self, id: str, options: list["DynamicCombo.Option"], display_name: str | None = None,  # noqa: A002
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     extra_dict: dict | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            self.options = list(options)

        def get_all(self) -> list[Input]:
            return [self] + [inp for option in self.options for inp in option.inputs]

        def as_dict(self) -> dict:
            return super().as_dict() | {"options": [o.as_dict() for o in self.options]}

        def validate(self) -> None:
            for option in self.options:
                for inp in option.inputs:
                    inp.validate()

        def sub_inputs(self) -> list[tuple[str, Input, bool]]:
            seen: dict[str, tuple[str, Input, bool]] = {}
            for option in self.options:
                for inp in option.inputs:
                    seen.setdefault(inp.id, (inp.id, inp, False))
            return list(seen.values())


@comfytype(io_type="COMFY_DYNAMICSLOT_V3")
class DynamicSlot(ComfyTypeI):
    """An optional slot that, once connected, adds more inputs."""

    Type = dict

    class Input(DynamicInput):
        def __init__(self, slot: Input, inputs: list[Input], display_name: str | None = None,
                     tooltip: str | None = None, lazy: bool | None = None, extra_dict: dict | None = None):
            if isinstance(slot, DynamicInput):
                raise ValueError("DynamicSlot slot cannot be a dynamic input")
            self.slot = copy.copy(slot)
            if self.slot.display_name is None:
                self.slot.display_name = display_name
            if self.slot.tooltip is None:
                self.slot.tooltip = tooltip
            if self.slot.lazy is None:
                self.slot.lazy = lazy
            super().__init__(slot.id, self.slot.display_name, True, self.slot.tooltip, self.slot.lazy,
                             self.slot.extra_dict)
            self.inputs = list(inputs)
            self.force_input = None
            if isinstance(self.slot, WidgetInput):
                self.force_input = True
                self.slot.force_input = True

        def get_all(self) -> list[Input]:
            return [self.slot] + self.inputs

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({
                "slotType": str(self.slot.get_io_type()),
                "inputs": create_input_dict_v1(self.inputs),
                "forceInput": self.force_input,
            })

        def validate(self) -> None:
            self.slot.validate()
            for inp in self.inputs:
                inp.validate()

        def sub_inputs(self) -> list[tuple[str, Input, bool]]:
            return [(inp.id, inp, False) for inp in self.inputs]


# --------------------------------------------------------------------------------------------
# hidden inputs
# --------------------------------------------------------------------------------------------

class Hidden(str, Enum):
    """Hidden values a node can ask for; ``Schema(hidden=[Hidden.unique_id, ...])``."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"
    comfy_usage_source = "COMFY_USAGE_SOURCE"


class HiddenHolder:
    """``cls.hidden`` while a node runs: the hidden values of this call (None when not asked for)."""

    def __init__(self, unique_id: str | None = None, prompt: Any = None, extra_pnginfo: Any = None,
                 dynprompt: Any = None, auth_token_comfy_org: str | None = None, api_key_comfy_org: str | None = None,
                 comfy_usage_source: str | None = None, **kwargs: Any):
        self.unique_id = unique_id
        self.prompt = prompt
        self.extra_pnginfo = extra_pnginfo
        self.dynprompt = dynprompt
        self.auth_token_comfy_org = auth_token_comfy_org
        self.api_key_comfy_org = api_key_comfy_org
        self.comfy_usage_source = comfy_usage_source
        for key, value in kwargs.items():
            setattr(self, key, value)

    def __getattr__(self, key: str) -> Any:
        # Unknown hidden values read as None (like ComfyUI).
        if key.startswith("__"):
            raise AttributeError(key)
        return None

    @classmethod
    def from_dict(cls, values: dict | None) -> "HiddenHolder":
        """From {Hidden kind (e.g. "UNIQUE_ID" or Hidden.unique_id): value}."""
        values = {str(_enum_value(k)): v for k, v in (values or {}).items()}
        return cls(**{member.name: values.get(member.value) for member in Hidden})

    def __repr__(self) -> str:
        return f"HiddenHolder(unique_id={self.unique_id!r})"


# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------

@dataclass
class PriceBadgeDepends:
    widgets: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    input_groups: list[str] = field(default_factory=list)

    def validate(self) -> None:
        for name in ("widgets", "inputs", "input_groups"):
            value = getattr(self, name)
            if not isinstance(value, list) or any(not isinstance(x, str) for x in value):
                raise ValueError(f"PriceBadgeDepends.{name} must be a list[str].")

    def as_dict(self, schema_inputs: list[Input]) -> dict:
        types: dict[str, str] = {}

        def collect(inputs: Iterable[Input], prefix: str = "") -> None:
            for inp in inputs:
                types[prefix + inp.id] = inp.get_io_type()
                collect(inp.get_all()[1:], prefix + inp.id + ".")

        collect(schema_inputs)
        widgets = []
        for w in self.widgets:
            if w not in types:
                raise ValueError(f"PriceBadge depends_on.widgets references unknown widget '{w}'. "
                                 f"Available widgets: {list(types)}")
            widgets.append({"name": w, "type": types[w]})
        return {"widgets": widgets, "inputs": self.inputs, "input_groups": self.input_groups}


@dataclass
class PriceBadge:
    expr: str
    depends_on: PriceBadgeDepends = field(default_factory=PriceBadgeDepends)
    engine: str = "jsonata"

    def validate(self) -> None:
        if self.engine != "jsonata":
            raise ValueError(f"Unsupported PriceBadge.engine {self.engine!r}; only 'jsonata' is supported.")
        if not isinstance(self.expr, str) or not self.expr.strip():
            raise ValueError("PriceBadge.expr must be a non-empty string.")
        self.depends_on.validate()

    def as_dict(self, schema_inputs: list[Input]) -> dict:
        return {"engine": self.engine, "depends_on": self.depends_on.as_dict(schema_inputs), "expr": self.expr}


@dataclass
class Schema:
    """Everything object_info says about a node, plus behaviour flags."""

    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Input] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    description: str = ""
    search_aliases: list[str] = field(default_factory=list)
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_dev_only: bool = False
    is_api_node: bool = False
    price_badge: PriceBadge | None = None
    not_idempotent: bool = False
    enable_expand: bool = False
    accept_all_inputs: bool = False
    essentials_category: str | None = None
    has_intermediate_output: bool = False
    loop_boundary: Literal["start", "end"] | None = None

    def validate(self) -> None:
        """Input ids and output ids must be unique; each declaration validates itself."""
        nested: list[Input] = []
        for inp in self.inputs:
            nested.extend([inp] if isinstance(inp, DynamicInput) else inp.get_all())
        input_ids = [i.id for i in nested]
        output_ids = [o.id for o in self.outputs]
        issues = []
        dup_in = [k for k, n in Counter(input_ids).items() if n > 1]
        dup_out = [k for k, n in Counter(output_ids).items() if n > 1]
        if dup_in:
            issues.append(f"Input ids must be unique, but {dup_in} are not.")
        if dup_out:
            issues.append(f"Output ids must be unique, but {dup_out} are not.")
        if issues:
            raise ValueError(f"{self.node_id}: " + "\n".join(issues))
        for inp in self.inputs:
            inp.validate()
        for out in self.outputs:
            out.validate()
        if self.price_badge is not None:
            self.price_badge.validate()

    def finalize(self) -> None:
        """Add the hidden values the flags imply and give unnamed outputs ids."""
        self.inputs = list(self.inputs or [])
        self.outputs = list(self.outputs or [])
        self.hidden = list(self.hidden or [])
        wanted = []
        if self.is_api_node:
            wanted += [Hidden.auth_token_comfy_org, Hidden.api_key_comfy_org, Hidden.comfy_usage_source]
        if self.is_output_node:
            wanted += [Hidden.prompt, Hidden.extra_pnginfo]
        for h in wanted:
            if h not in self.hidden:
                self.hidden.append(h)
        self.hidden = [h if isinstance(h, Hidden) else Hidden(h) for h in self.hidden]
        for i, output in enumerate(self.outputs):
            if output.id is None:
                output.id = f"_{i}_{output.io_type}_"


# --------------------------------------------------------------------------------------------
# node base class
# --------------------------------------------------------------------------------------------

class NodeOutput:
    """What execute() returns: output values, plus optional ``ui`` (a ui object or dict),
    ``expand`` (a graph from GraphBuilder.finalize()) or ``block_execution`` (a message;
    every output becomes an ExecutionBlocker)."""

    def __init__(self, *args: Any, ui: Any = None, expand: dict | None = None, block_execution: str | None = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self) -> tuple | None:
        return self.args if len(self.args) > 0 else None

    @classmethod
    def from_dict(cls, data: dict) -> "NodeOutput":
        from comfyui.engine.graph import ExecutionBlocker

        args: tuple = ()
        if "result" in data:
            result = data["result"]
            if isinstance(result, ExecutionBlocker):
                return cls._blocked_by(result)
            args = tuple(result)
        return cls(*args, ui=data.get("ui"), expand=data.get("expand"))

    @classmethod
    def _blocked_by(cls, blocker: Any) -> "NodeOutput":
        # ExecutionBlocker(None) blocks silently; remember it even though the message is None.
        out = cls(block_execution=blocker.message)
        out._blocked = True
        return out

    @property
    def blocked(self) -> bool:
        return self.block_execution is not None or getattr(self, "_blocked", False)

    def __getitem__(self, index: int) -> Any:
        return self.args[index]

    def __len__(self) -> int:
        return len(self.args)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("ui", "expand", "block_execution")
                        if getattr(self, k) is not None)
        return f"NodeOutput({', '.join(map(repr, self.args))}{extra})"


class _UIOutput:
    """Base of ui objects (``ui.PreviewImage`` ...): ``as_dict()`` gives the ComfyUI ui dict."""

    def as_dict(self) -> dict:
        raise NotImplementedError


def first_real_override(cls: type, name: str, base: type | None = None) -> Any:
    """The attribute ``name`` if some class between ``cls`` and ``base`` (ComfyNode) defines it."""
    base = base or ComfyNode
    for klass in cls.__mro__:
        if klass is base or klass is _ComfyNodeBase:
            return None
        if name in klass.__dict__:
            return getattr(cls, name)
    return None


def _schema_cache(cls: type) -> dict:
    cache = cls.__dict__.get("_comfy_schema_cache")
    if cache is None:
        if first_real_override(cls, "define_schema") is None:
            # An abstract intermediate base: keep hasattr(cls, "RETURN_TYPES") etc. safe.
            raise AttributeError(f"{cls.__name__} defines no schema")
        schema = cls.GET_SCHEMA()
        outputs = schema.outputs
        cache = {
            "schema": schema,
            "RETURN_TYPES": [o.io_type for o in outputs],
            "RETURN_NAMES": [o.display_name if o.display_name else o.io_type for o in outputs],
            "OUTPUT_IS_LIST": [bool(o.is_output_list) for o in outputs],
            "OUTPUT_TOOLTIPS": [o.tooltip if o.tooltip else None for o in outputs],
        }
        setattr(cls, "_comfy_schema_cache", cache)
    return cache


def _schema_attr(attr: str) -> classproperty:
    return classproperty(lambda cls: getattr(_schema_cache(cls)["schema"], attr))


def _cached_attr(key: str) -> classproperty:
    return classproperty(lambda cls: _schema_cache(cls)[key])


def _normalize_output(cls: type, value: Any) -> NodeOutput:
    from comfyui.engine.graph import ExecutionBlocker

    if value is None:
        out = NodeOutput()
    elif isinstance(value, NodeOutput):
        out = value
    elif isinstance(value, tuple):
        out = NodeOutput(*value)
    elif isinstance(value, dict):
        out = NodeOutput.from_dict(value)
    elif isinstance(value, ExecutionBlocker):
        out = NodeOutput._blocked_by(value)
    else:
        raise TypeError(f"{cls.__name__}.execute returned {type(value).__name__}; expected io.NodeOutput")
    if out.expand is not None and not _schema_cache(cls)["schema"].enable_expand:
        raise ValueError(f"Node {cls.__name__} returned NodeOutput(expand=...) but its Schema does not set "
                         "enable_expand=True")
    return out


class _ComfyNodeBase:
    """Internals shared by every schema-API node; define nodes by subclassing ComfyNode."""

    RELATIVE_PYTHON_MODULE: str | None = None
    SCHEMA: Schema | None = None
    # The hidden values of the running call; set on a per-call clone of the class.
    hidden: HiddenHolder = HiddenHolder()

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError(f"{cls.__name__} does not define define_schema()")

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError(f"{cls.__name__} does not define execute()")

    @classmethod
    def validate_inputs(cls, **kwargs: Any) -> bool | str:
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def check_lazy_status(cls, **kwargs: Any) -> list[str]:
        """Names of the lazy inputs still needed; by default every input that is None."""
        return [name for name, value in kwargs.items() if value is None]

    @classmethod
    def VALIDATE_CLASS(cls) -> None:  # noqa: N802
        if first_real_override(cls, "define_schema") is None:
            raise TypeError(f"No define_schema function was defined for node class {cls.__name__}.")
        if first_real_override(cls, "execute") is None:
            raise TypeError(f"No execute function was defined for node class {cls.__name__}.")

    @classmethod
    def FINALIZE_SCHEMA(cls) -> Schema:  # noqa: N802
        schema = cls.define_schema()
        if not isinstance(schema, Schema):
            raise TypeError(f"{cls.__name__}.define_schema() must return io.Schema, got {type(schema).__name__}")
        schema.finalize()
        return schema

    @classmethod
    def GET_SCHEMA(cls) -> Schema:  # noqa: N802
        """define_schema(), finalized and validated."""
        cls.VALIDATE_CLASS()
        schema = cls.FINALIZE_SCHEMA()
        schema.validate()
        cls.SCHEMA = schema
        return schema

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict:  # noqa: N802
        """This node's object_info entry."""
        from .adapter import node_def_from_schema

        return node_def_from_schema(cls, python_module=cls.RELATIVE_PYTHON_MODULE or "nodes").object_info()

    @classmethod
    def PREPARE_CLASS_CLONE(cls, hidden: dict | HiddenHolder | None = None) -> type:  # noqa: N802
        """A throwaway subclass carrying one call's hidden values, so concurrent calls never share them."""
        holder = hidden if isinstance(hidden, HiddenHolder) else HiddenHolder.from_dict(hidden)
        namespace = {"hidden": holder, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                     "__doc__": cls.__doc__, "_comfy_clone_of": cls}
        cache = cls.__dict__.get("_comfy_schema_cache")
        if cache is not None:
            namespace["_comfy_schema_cache"] = cache
        return type(cls.__name__, (cls,), namespace)

    # ---- classic API view (INPUT_TYPES, RETURN_TYPES, FUNCTION, ...) ----
    @classmethod
    def INPUT_TYPES(cls) -> dict:  # noqa: N802
        from .adapter import build_inputs

        return build_inputs(cls.FINALIZE_SCHEMA())

    @classproperty
    def FUNCTION(cls) -> str:  # noqa: N802
        return "EXECUTE_NORMALIZED_ASYNC" if inspect.iscoroutinefunction(cls.execute) else "EXECUTE_NORMALIZED"

    @classmethod
    def EXECUTE_NORMALIZED(cls, *args: Any, **kwargs: Any) -> NodeOutput:  # noqa: N802
        return _normalize_output(cls, cls.execute(*args, **kwargs))

    @classmethod
    async def EXECUTE_NORMALIZED_ASYNC(cls, *args: Any, **kwargs: Any) -> NodeOutput:  # noqa: N802
        return _normalize_output(cls, await cls.execute(*args, **kwargs))

    RETURN_TYPES = _cached_attr("RETURN_TYPES")
    RETURN_NAMES = _cached_attr("RETURN_NAMES")
    OUTPUT_IS_LIST = _cached_attr("OUTPUT_IS_LIST")
    OUTPUT_TOOLTIPS = _cached_attr("OUTPUT_TOOLTIPS")
    CATEGORY = _schema_attr("category")
    DESCRIPTION = _schema_attr("description")
    OUTPUT_NODE = _schema_attr("is_output_node")
    INPUT_IS_LIST = _schema_attr("is_input_list")
    DEPRECATED = _schema_attr("is_deprecated")
    EXPERIMENTAL = _schema_attr("is_experimental")
    DEV_ONLY = _schema_attr("is_dev_only")
    API_NODE = _schema_attr("is_api_node")
    NOT_IDEMPOTENT = _schema_attr("not_idempotent")
    HAS_INTERMEDIATE_OUTPUT = _schema_attr("has_intermediate_output")
    ACCEPT_ALL_INPUTS = _schema_attr("accept_all_inputs")
    SEARCH_ALIASES = _schema_attr("search_aliases")


class ComfyNode(_ComfyNodeBase):
    """Base class of schema-API nodes: override ``define_schema`` and ``execute`` (classmethods;
    execute may be ``async``), optionally ``validate_inputs``, ``fingerprint_inputs`` and
    ``check_lazy_status``. Hidden values are read from ``cls.hidden`` inside those methods."""

    @classmethod
    def GET_BASE_CLASS(cls) -> type:  # noqa: N802
        return ComfyNode


# --------------------------------------------------------------------------------------------
# node replacement declarations (data only)
# --------------------------------------------------------------------------------------------

class NodeReplace:
    """Declares that ``old_node_id`` can be replaced by ``new_node_id`` (inputs/outputs mapped)."""

    def __init__(self, new_node_id: str, old_node_id: str, old_widget_ids: list[str] | None = None,
                 input_mapping: list[dict] | None = None, output_mapping: list[dict] | None = None):
        self.new_node_id = new_node_id
        self.old_node_id = old_node_id
        self.old_widget_ids = old_widget_ids
        self.input_mapping = input_mapping
        self.output_mapping = output_mapping

    def as_dict(self) -> dict:
        return {
            "new_node_id": self.new_node_id,
            "old_node_id": self.old_node_id,
            "old_widget_ids": self.old_widget_ids,
            "input_mapping": list(self.input_mapping) if self.input_mapping else None,
            "output_mapping": list(self.output_mapping) if self.output_mapping else None,
        }


__all__ = [
    "FolderType", "UploadType", "NumberDisplay", "ControlAfterGenerate", "RemoteOptions", "RemoteItemSchema",
    "RemoteComboOptions", "comfytype", "Custom", "Input", "WidgetInput", "Output", "ComfyTypeI", "ComfyTypeIO",
    "Boolean", "Int", "Float", "String", "Combo", "MultiCombo", "Webcam", "Color", "Colors", "BoundingBox",
    "BoundingBoxes", "ImageCompare", "Compositor", "CameraInfoState", "Image", "Mask", "Latent", "Conditioning",
    "Sampler", "Sigmas", "Noise", "Guider", "Clip", "ControlNet", "Vae", "Model", "ModelPatch", "ClipVision",
    "ClipVisionOutput", "BackgroundRemoval", "StyleModel", "Gligen", "UpscaleModel", "LatentUpscaleModel", "Audio",
    "Video", "SVG", "LoraModel", "LossMap", "Voxel", "Mesh", "Splat", "File3DAny", "File3DGLB", "File3DGLTF",
    "File3DFBX", "File3DOBJ", "File3DSTL", "File3DUSDZ", "File3DPLY", "File3DSPLAT", "File3DSPZ", "File3DKSPLAT",
    "File3DSplatAny", "File3DPointCloudAny", "Hooks", "HookKeyframes", "TimestepsRange",
    "LatentOperation", "FlowControl", "Accumulation", "Load3DCamera", "Load3D", "Load3DAnimation", "Photomaker",
    "Point", "FaceAnalysis", "BBOX", "SEGS", "AudioEncoder", "AudioEncoderOutput", "Tracks", "WanCameraEmbedding",
    "Histogram", "Layers", "Dict", "Array", "AnyType", "MultiType", "MatchType", "DynamicInput", "DynamicOutput",
    "Autogrow", "DynamicCombo", "DynamicSlot", "Hidden", "HiddenHolder", "PriceBadge", "PriceBadgeDepends",
    "Schema", "ComfyNode", "NodeOutput", "NodeReplace", "prune_dict", "classproperty", "first_real_override",
]
