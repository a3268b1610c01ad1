"""Request and response models of the Comfy API proxy routes the API nodes call, written
against the proxy's OpenAPI document (field names, bounds and enums as the vendors define them).
The contract server in the tests validates every request with these same models."""
from __future__ import annotations

from enum import Enum
from typing import Any, Optional

from pydantic import BaseModel, Field

# ---- Comfy API storage (/customers/storage): input files for vendors that take URLs ----


class UploadRequest(BaseModel):
    file_name: str
    content_type: Optional[str] = None


class UploadResponse(BaseModel):
    upload_url: str  # signed: PUT the bytes here
    download_url: str  # what the vendor is given


# ---- Black Forest Labs (/proxy/bfl/...) ----


class BFLOutputFormat(str, Enum):
    png = "png"
    jpeg = "jpeg"


class BFLFluxProUltraGenerateRequest(BaseModel):
    prompt: str
    prompt_upsampling: Optional[bool] = None
    seed: Optional[int] = None
    aspect_ratio: Optional[str] = None
    safety_tolerance: Optional[int] = Field(None, ge=0, le=6)
    output_format: Optional[BFLOutputFormat] = None
    raw: Optional[bool] = None
    image_prompt: Optional[str] = None  # base64 PNG
    image_prompt_strength: Optional[float] = Field(None, ge=0.0, le=1.0)


class BFLFluxProGenerateRequest(BaseModel):
    prompt: str
    prompt_upsampling: Optional[bool] = None
    seed: Optional[int] = None
    width: int = Field(1024, ge=256, le=1440, multiple_of=32)
    height: int = Field(768, ge=256, le=1440, multiple_of=32)
    safety_tolerance: Optional[int] = Field(None, ge=0, le=6)
    output_format: Optional[BFLOutputFormat] = None
    image_prompt: Optional[str] = None


class BFLFluxKontextProGenerateRequest(BaseModel):
    prompt: str
    input_image: Optional[str] = None
    seed: Optional[int] = None
    guidance: float = Field(..., ge=0.1, le=99.0)
    steps: int = Field(..., ge=1, le=150)
    safety_tolerance: Optional[int] = Field(None, ge=0, le=2)
    output_format: Optional[BFLOutputFormat] = None
    aspect_ratio: Optional[str] = None
    prompt_upsampling: Optional[bool] = None


class BFLFluxExpandImageRequest(BaseModel):
    prompt: str
    prompt_upsampling: Optional[bool] = None
    seed: Optional[int] = None
    top: int = Field(..., ge=0, le=2048)
    bottom: int = Field(..., ge=0, le=2048)
    left: int = Field(..., ge=0, le=2048)
    right: int = Field(..., ge=0, le=2048)
    steps: int = Field(..., ge=15, le=50)
    guidance: float = Field(..., ge=1.5, le=100)
    safety_tolerance: Optional[int] = Field(None, ge=0, le=6)
    output_format: Optional[BFLOutputFormat] = None
    image: str  # base64 PNG


class BFLFluxFillImageRequest(BaseModel):
    prompt: str
    prompt_upsampling: Optional[bool] = None
    seed: Optional[int] = None
    steps: int = Field(..., ge=15, le=50)
    guidance: float = Field(..., ge=1.5, le=100)
    safety_tolerance: Optional[int] = Field(None, ge=0, le=6)
    output_format: Optional[BFLOutputFormat] = None
    image: str  # base64 PNG
    mask: str  # base64 PNG, white = repaint


class BFLFluxControlImageRequest(BaseModel):
    """Canny and depth control: ``control_image`` (BFL preprocesses it) or ``preprocessed_image``."""
    prompt: str
    prompt_upsampling: Optional[bool] = None
    canny_low_threshold: Optional[int] = Field(None, ge=0, le=500)  # canny only
    canny_high_threshold: Optional[int] = Field(None, ge=0, le=500)
    seed: Optional[int] = None
    steps: int = Field(..., ge=15, le=50)
    guidance: float = Field(..., ge=1, le=100)
    safety_tolerance: Optional[int] = Field(None, ge=0, le=6)
    output_format: Optional[BFLOutputFormat] = None
    control_image: Optional[str] = None
    preprocessed_image: Optional[str] = None


class BFLFluxProGenerateResponse(BaseModel):
    id: str
    polling_url: str


class BFLStatus(str, Enum):
    task_not_found = "Task not found"
    pending = "Pending"
    request_moderated = "Request Moderated"
    content_moderated = "Content Moderated"
    ready = "Ready"
    error = "Error"


class BFLFluxProStatusResponse(BaseModel):
    id: str
    status: BFLStatus
    result: Optional[dict[str, Any]] = None  # {"sample": url} once Ready
    progress: Optional[float] = Field(None, ge=0.0, le=1.0)
    details: Optional[dict[str, Any]] = None


# ---- OpenAI (/proxy/openai/images/...) ----


class OpenAIImageGenerationRequest(BaseModel):
    model: str
    prompt: str
    n: Optional[int] = Field(None, ge=1, le=10)
    size: Optional[str] = None
    quality: Optional[str] = None
    style: Optional[str] = None
    background: Optional[str] = None
    moderation: Optional[str] = None
    output_format: Optional[str] = None
    response_format: Optional[str] = None
    user: Optional[str] = None
    seed: Optional[int] = None  # accepted by the proxy, ignored by OpenAI


class OpenAIImageEditRequest(BaseModel):
    """The form fields of a multipart ``images/edits`` request (images travel as file parts)."""
    model: str
    prompt: str
    n: Optional[int] = Field(None, ge=1, le=10)
    size: Optional[str] = None
    quality: Optional[str] = None
    background: Optional[str] = None
    moderation: Optional[str] = None


class OpenAIImageData(BaseModel):
    b64_json: Optional[str] = None
    url: Optional[str] = None
    revised_prompt: Optional[str] = None


class OpenAIImageGenerationResponse(BaseModel):
    created: Optional[int] = None
    data: list[OpenAIImageData] = Field(default_factory=list)


# ---- Stability AI (/proxy/stability/v2beta/stable-image/generate/ultra) ----


class StabilityStableUltraRequest(BaseModel):
    """Form fields of the multipart Stable Image Ultra request."""
    prompt: str = Field(..., min_length=1, max_length=10000)
    negative_prompt: Optional[str] = None
    aspect_ratio: Optional[str] = None
    seed: Optional[int] = Field(None, ge=0, le=4294967294)
    strength: Optional[float] = Field(None, ge=0.0, le=1.0)
    style_preset: Optional[str] = None


class StabilityStable3_5Request(BaseModel):
    model: str
    mode: str  # text-to-image | image-to-image
    prompt: str = Field(..., min_length=1, max_length=10000)
    negative_prompt: Optional[str] = None
    aspect_ratio: Optional[str] = None
    seed: Optional[int] = Field(None, ge=0, le=4294967294)
    output_format: Optional[str] = "png"
    style_preset: Optional[str] = None
    cfg_scale: float = Field(..., ge=1.0, le=10.0)
    strength: Optional[float] = Field(None, ge=0.0, le=1.0)


class StabilityUpscaleConservativeRequest(BaseModel):
    prompt: str = Field(..., min_length=1, max_length=10000)
    negative_prompt: Optional[str] = None
    seed: Optional[int] = Field(None, ge=0, le=4294967294)
    output_format: Optional[str] = "png"
    creativity: Optional[float] = Field(None, ge=0.2, le=0.5)


class StabilityUpscaleCreativeRequest(BaseModel):
    prompt: str = Field(..., min_length=1, max_length=10000)
    negative_prompt: Optional[str] = None
    seed: Optional[int] = Field(None, ge=0, le=4294967294)
    output_format: Optional[str] = "png"
    creativity: Optional[float] = Field(None, ge=0.1, le=0.5)
    style_preset: Optional[str] = None


class StabilityUpscaleFastRequest(BaseModel):
    output_format: Optional[str] = "png"


class StabilityAsyncResponse(BaseModel):
    id: str


class StabilityResultsGetResponse(BaseModel):
    """``GET /v2beta/results/{id}``: ``status`` in-progress until ``finish_reason`` and
    ``result`` (base64) arrive; ``name``/``errors`` on failure."""
    id: Optional[str] = None
    status: Optional[str] = None
    finish_reason: Optional[str] = None
    result: Optional[str] = None
    seed: Optional[int] = None
    name: Optional[str] = None
    errors: Optional[list[str]] = None


class StabilityStableUltraResponse(BaseModel):
    image: Optional[str] = None  # base64
    finish_reason: Optional[str] = None  # SUCCESS | CONTENT_FILTERED
    seed: Optional[int] = None


# ---- Ideogram (/proxy/ideogram/generate, V1 and V2 models) ----


class IdeogramImageRequest(BaseModel):
    prompt: str
    model: str  # V_1 | V_1_TURBO | V_2 | V_2_TURBO
    aspect_ratio: Optional[str] = None  # ASPECT_16_9 ...
    resolution: Optional[str] = None  # RESOLUTION_1024_768 ... (V2)
    magic_prompt_option: Optional[str] = None  # ON | OFF
    negative_prompt: Optional[str] = None
    num_images: Optional[int] = Field(None, ge=1, le=8)
    seed: Optional[int] = Field(None, ge=0, le=2147483647)
    style_type: Optional[str] = None  # V2
    color_palette: Optional[dict[str, Any]] = None


class IdeogramGenerateRequest(BaseModel):
    image_request: IdeogramImageRequest


class IdeogramV3Request(BaseModel):
    """Form fields of the multipart ``/proxy/ideogram/ideogram-v3/generate`` request."""
    prompt: str
    rendering_speed: str  # TURBO | DEFAULT | QUALITY
    aspect_ratio: Optional[str] = None  # 16x9 ...
    resolution: Optional[str] = None  # 1280x720 ...
    magic_prompt: Optional[str] = None  # ON | OFF
    negative_prompt: Optional[str] = None
    num_images: Optional[int] = Field(None, ge=1, le=8)
    seed: Optional[int] = Field(None, ge=0, le=2147483647)
    style_type: Optional[str] = None


class IdeogramV3EditRequest(BaseModel):
    """Form fields of ``/proxy/ideogram/ideogram-v3/edit`` (image and mask travel as files)."""
    prompt: str
    rendering_speed: str
    magic_prompt: Optional[str] = None
    num_images: Optional[int] = Field(None, ge=1, le=8)
    seed: Optional[int] = Field(None, ge=0, le=2147483647)


class IdeogramImage(BaseModel):
    url: Optional[str] = None
    is_image_safe: Optional[bool] = None
    prompt: Optional[str] = None
    resolution: Optional[str] = None
    seed: Optional[int] = None
    style_type: Optional[str] = None


class IdeogramGenerateResponse(BaseModel):
    created: Optional[str] = None
    data: list[IdeogramImage] = Field(default_factory=list)


# ---- Luma (/proxy/luma/generations/...) ----


class LumaState(str, Enum):
    queued = "queued"
    dreaming = "dreaming"
    completed = "completed"
    failed = "failed"


class LumaImageRef(BaseModel):
    url: str
    weight: float = Field(..., ge=0.0, le=1.0)


class LumaImageIdentity(BaseModel):
    images: list[str]


class LumaCharacterRef(BaseModel):
    identity0: LumaImageIdentity


class LumaImageGenerationRequest(BaseModel):
    prompt: str
    model: str = "photon-1"  # photon-1 | photon-flash-1
    aspect_ratio: Optional[str] = "16:9"
    image_ref: Optional[list[LumaImageRef]] = None
    style_ref: Optional[list[LumaImageRef]] = None
    character_ref: Optional[LumaCharacterRef] = None
    modify_image_ref: Optional[LumaImageRef] = Field(None)


class LumaAssets(BaseModel):
    image: Optional[str] = None
    video: Optional[str] = None


class LumaGeneration(BaseModel):
    id: str
    state: LumaState
    failure_reason: Optional[str] = None
    created_at: Optional[str] = None
    assets: Optional[LumaAssets] = None
    model: Optional[str] = None
