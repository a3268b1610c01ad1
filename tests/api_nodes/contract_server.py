"""A stand-in for the Comfy API proxy (and OpenAI's own API) on loopback: it implements the
routes the API nodes call, validates every request against the same pydantic models, checks
credentials, and simulates tasks (queued -> running with progress -> Ready / moderated /
failed), transient failures (a queue of statuses to answer first) and slow answers."""
from __future__ import annotations

import asyncio
import base64
import io
import itertools
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import BaseModel, ValidationError

from comfyui.api_nodes import models as m

RESULT_SIZE = (64, 48)  # width, height of every image the server returns
RESULT_COLOR = (200, 30, 90)

STABILITY_MODELS = {
    ("generate", "ultra"): m.StabilityStableUltraRequest,
    ("generate", "sd3"): m.StabilityStable3_5Request,
    ("upscale", "conservative"): m.StabilityUpscaleConservativeRequest,
    ("upscale", "creative"): m.StabilityUpscaleCreativeRequest,
    ("upscale", "fast"): m.StabilityUpscaleFastRequest,
}
BFL_MODELS = {
    "flux-pro-1.1-ultra": m.BFLFluxProUltraGenerateRequest,
    "flux-pro-1.1": m.BFLFluxProGenerateRequest,
    "flux-kontext-pro": m.BFLFluxKontextProGenerateRequest,
    "flux-kontext-max": m.BFLFluxKontextProGenerateRequest,
    "flux-pro-1.0-expand": m.BFLFluxExpandImageRequest,
    "flux-pro-1.0-fill": m.BFLFluxFillImageRequest,
    "flux-pro-1.0-canny": m.BFLFluxControlImageRequest,
    "flux-pro-1.0-depth": m.BFLFluxControlImageRequest,
}


def result_png(size=RESULT_SIZE, color=RESULT_COLOR) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Task:
    id: str
    steps: int  # polls answered Pending before the outcome
    outcome: str  # Ready | Request Moderated | Content Moderated | Error
    polls: int = 0


@dataclass
class ContractServer:
    token: str | None = None  # the Comfy account token the proxy accepts
    api_key: str | None = None  # the Comfy API key it accepts
    openai_key: str | None = None  # the key OpenAI's own API (/v1) accepts
    task_steps: int = 3
    task_outcome: str = "Ready"
    answer_first: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer first
    delay: float = 0.0  # seconds before each answer
    requests: list[dict] = field(default_factory=list)
    stored: dict[str, bytes] = field(default_factory=dict)  # uploads: key -> bytes
    tasks: dict[str, Task] = field(default_factory=dict)
    url: str = ""

    def __post_init__(self):
        self._ids = itertools.count(1)
        self._server: TestServer | None = None

    async def start(self) -> "ContractServer":
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/proxy/bfl/{model}/generate", self.bfl_generate)
        app.router.add_get("/proxy/bfl/get_result", self.bfl_result)
        app.router.add_post("/proxy/openai/images/generations", self.openai_generations)
        app.router.add_post("/proxy/openai/images/edits", self.openai_edits)
        app.router.add_post("/v1/images/generations", self.openai_generations)
        app.router.add_post("/proxy/stability/v2beta/stable-image/{kind}/{model}", self.stability)
        app.router.add_get("/proxy/stability/v2beta/results/{id}", self.stability_result)
        app.router.add_post("/proxy/ideogram/generate", self.ideogram)
        app.router.add_post("/proxy/ideogram/ideogram-v3/{mode}", self.ideogram_v3)
        app.router.add_post("/proxy/luma/generations/image", self.luma_generate)
        app.router.add_get("/proxy/luma/generations/{id}", self.luma_generation)
        app.router.add_post("/customers/storage", self.storage_slot)
        app.router.add_put("/storage/{key}", self.storage_put)
        app.router.add_get("/files/{name}", self.file)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        self.url = str(self._server.make_url("")).rstrip("/")
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    # ---- plumbing ----
    @web.middleware
    async def _record(self, request: web.Request, handler):
        self.requests.append({"method": request.method, "path": request.path, "headers": dict(request.headers)})
        if self.delay:
            await asyncio.sleep(self.delay)
        queued = self.answer_first.get(request.path)
        if queued:
            status = queued.pop(0)
            return web.json_response({"error": {"message": f"simulated {status}", "type": "server_error"}},
                                     status=status)
        signed = request.path.startswith(("/files/", "/storage/"))  # signed URLs need no login
        if not signed and not self._authorized(request):
            return web.json_response({"error": {"message": "Unauthorized", "type": "auth"}}, status=401)
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if request.path.startswith("/v1/"):
            return self.openai_key is not None and auth == f"Bearer {self.openai_key}"
        return ((self.token is not None and auth == f"Bearer {self.token}")
                or (self.api_key is not None and request.headers.get("X-API-KEY") == self.api_key))

    @staticmethod
    def _invalid(e: ValidationError) -> web.Response:
        return web.json_response({"error": {"message": str(e.errors()[0]["msg"]), "type": "invalid_request_error"}},
                                 status=422)

    @staticmethod
    async def _form(request: web.Request) -> tuple[dict, dict[str, list[bytes]]]:
        fields, files = {}, {}
        async for part in await request.multipart():
            if part.filename is not None:
                files.setdefault(part.name, []).append(await part.read())
            else:
                fields[part.name] = await part.text()
        return fields, files

    def _validate(self, model: type[BaseModel], data) -> BaseModel:
        body = model.model_validate(data)
        self.requests[-1]["body"] = body
        return body

    # ---- BFL ----
    async def bfl_generate(self, request: web.Request) -> web.Response:
        model = BFL_MODELS.get(request.match_info["model"])
        if model is None:
            raise web.HTTPNotFound()
        try:
            self._validate(model, await request.json())
        except ValidationError as e:
            return self._invalid(e)
        task = Task(f"task-{next(self._ids)}", self.task_steps, self.task_outcome)
        self.tasks[task.id] = task
        answer = m.BFLFluxProGenerateResponse(id=task.id, polling_url=f"{self.url}/proxy/bfl/get_result?id={task.id}")
        return web.json_response(answer.model_dump())

    async def bfl_result(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.query.get("id", ""))
        if task is None:
            return web.json_response(m.BFLFluxProStatusResponse(id="", status=m.BFLStatus.task_not_found)
                                     .model_dump(mode="json"))
        task.polls += 1
        if task.polls <= task.steps:
            status = m.BFLFluxProStatusResponse(id=task.id, status=m.BFLStatus.pending,
                                                progress=round(task.polls / (task.steps + 1), 3))
        elif task.outcome == "Ready":
            status = m.BFLFluxProStatusResponse(id=task.id, status=m.BFLStatus.ready, progress=1.0,
                                                result={"sample": f"{self.url}/files/{task.id}.png"})
        else:
            status = m.BFLFluxProStatusResponse(id=task.id, status=m.BFLStatus(task.outcome),
                                                details={"reason": "simulated"})
        return web.json_response(status.model_dump(mode="json"))

    async def file(self, request: web.Request) -> web.Response:
        return web.Response(body=result_png(), content_type="image/png")

    # ---- OpenAI ----
    def _openai_answer(self, body) -> web.Response:
        if "forbidden" in body.prompt:
            return web.json_response({"error": {"message": "Your request was rejected by the safety system.",
                                                "type": "image_generation_user_error", "code": "moderation_blocked"}},
                                     status=400)
        if body.model == "dall-e-3":  # DALL-E 3 answers with URLs, the others inline
            data = [m.OpenAIImageData(url=f"{self.url}/files/openai.png", revised_prompt=body.prompt)]
        else:
            data = [m.OpenAIImageData(b64_json=base64.b64encode(result_png()).decode()) for _ in range(body.n or 1)]
        return web.json_response(m.OpenAIImageGenerationResponse(created=1, data=data).model_dump(exclude_none=True))

    async def openai_generations(self, request: web.Request) -> web.Response:
        try:
            body = self._validate(m.OpenAIImageGenerationRequest, await request.json())
        except ValidationError as e:
            return self._invalid(e)
        return self._openai_answer(body)

    async def openai_edits(self, request: web.Request) -> web.Response:
        fields, files = await self._form(request)
        try:
            body = self._validate(m.OpenAIImageEditRequest, fields)
        except ValidationError as e:
            return self._invalid(e)
        if not (files.get("image") or files.get("image[]")):
            return web.json_response({"error": {"message": "image is required"}}, status=400)
        self.requests[-1]["files"] = files
        return self._openai_answer(body)

    # ---- storage and Luma ----
    async def storage_slot(self, request: web.Request) -> web.Response:
        try:
            slot = self._validate(m.UploadRequest, await request.json())
        except ValidationError as e:
            return self._invalid(e)
        key = f"upload-{next(self._ids)}-{slot.file_name}"
        return web.json_response(m.UploadResponse(upload_url=f"{self.url}/storage/{key}",
                                                  download_url=f"{self.url}/files/{key}").model_dump())

    async def storage_put(self, request: web.Request) -> web.Response:
        self.stored[request.match_info["key"]] = await request.read()
        return web.Response(status=200)

    def stored_url_ok(self, url: str) -> bool:
        return url.startswith(f"{self.url}/files/") and url.rsplit("/", 1)[1] in self.stored

    async def luma_generate(self, request: web.Request) -> web.Response:
        try:
            body = self._validate(m.LumaImageGenerationRequest, await request.json())
        except ValidationError as e:
            return self._invalid(e)
        refs = [r.url for r in (body.image_ref or []) + (body.style_ref or [])]
        refs += body.character_ref.identity0.images if body.character_ref else []
        refs += [body.modify_image_ref.url] if body.modify_image_ref else []
        if not all(self.stored_url_ok(u) for u in refs):
            return web.json_response({"detail": "image URL not found"}, status=400)
        task = Task(f"luma-{next(self._ids)}", self.task_steps, self.task_outcome)
        self.tasks[task.id] = task
        return web.json_response(m.LumaGeneration(id=task.id, state=m.LumaState.queued,
                                                  model=body.model).model_dump(mode="json"), status=201)

    async def luma_generation(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return web.json_response({"detail": "Generation not found"}, status=404)
        task.polls += 1
        if task.polls <= task.steps:
            state = m.LumaState.queued if task.polls == 1 else m.LumaState.dreaming
            answer = m.LumaGeneration(id=task.id, state=state)
        elif task.outcome == "Ready":
            answer = m.LumaGeneration(id=task.id, state=m.LumaState.completed,
                                      assets=m.LumaAssets(image=f"{self.url}/files/{task.id}.png"))
        else:
            answer = m.LumaGeneration(id=task.id, state=m.LumaState.failed, failure_reason="prompt not allowed")
        return web.json_response(answer.model_dump(mode="json", exclude_none=True))

    # ---- Ideogram ----
    async def ideogram(self, request: web.Request) -> web.Response:
        try:
            body = self._validate(m.IdeogramGenerateRequest, await request.json()).image_request
        except ValidationError as e:
            return self._invalid(e)
        return self._ideogram_answer(body)

    async def ideogram_v3(self, request: web.Request) -> web.Response:
        mode = request.match_info["mode"]
        if request.content_type != "multipart/form-data" or mode not in ("generate", "edit"):
            return web.json_response({"error": {"message": "multipart/form-data expected"}}, status=400)
        fields, files = await self._form(request)
        try:
            body = self._validate(m.IdeogramV3Request if mode == "generate" else m.IdeogramV3EditRequest, fields)
        except ValidationError as e:
            return self._invalid(e)
        if mode == "edit" and not (files.get("image") and files.get("mask")):
            return web.json_response({"error": {"message": "image and mask are required"}}, status=400)
        self.requests[-1]["files"] = files
        return self._ideogram_answer(body)

    def _ideogram_answer(self, body) -> web.Response:
        if "forbidden" in body.prompt:
            data = [m.IdeogramImage(is_image_safe=False, seed=body.seed)]
        else:
            data = [m.IdeogramImage(url=f"{self.url}/files/ideogram-{i}.png", is_image_safe=True, seed=body.seed,
                                    prompt=body.prompt) for i in range(body.num_images or 1)]
        answer = m.IdeogramGenerateResponse(created="2025-01-01T00:00:00Z", data=data)
        return web.json_response(answer.model_dump(exclude_none=True))

    # ---- Stability ----
    async def stability(self, request: web.Request) -> web.Response:
        model = STABILITY_MODELS.get((request.match_info["kind"], request.match_info["model"]))
        if model is None:
            raise web.HTTPNotFound()
        fields, files = await self._form(request)
        try:
            body = self._validate(model, fields)
        except ValidationError as e:
            return self._invalid(e)
        self.requests[-1]["files"] = files
        if request.match_info["model"] in ("conservative", "creative", "fast") and not files.get("image"):
            return web.json_response({"name": "bad_request", "errors": ["image: required"]}, status=400)
        if request.match_info["model"] == "creative":  # a task: poll /v2beta/results/{id}
            task = Task(f"stab-{next(self._ids)}", self.task_steps, self.task_outcome)
            self.tasks[task.id] = task
            return web.json_response(m.StabilityAsyncResponse(id=task.id).model_dump())
        if "forbidden" in getattr(body, "prompt", ""):
            answer = m.StabilityStableUltraResponse(finish_reason="CONTENT_FILTERED", seed=getattr(body, "seed", None))
        else:
            answer = m.StabilityStableUltraResponse(image=base64.b64encode(result_png()).decode(),
                                                    finish_reason="SUCCESS", seed=getattr(body, "seed", None))
        return web.json_response(answer.model_dump(exclude_none=True))

    async def stability_result(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return web.json_response({"name": "not_found", "errors": ["no such generation"]}, status=404)
        task.polls += 1
        if task.polls <= task.steps:
            answer = m.StabilityResultsGetResponse(id=task.id, status="in-progress")
            return web.json_response(answer.model_dump(exclude_none=True), status=202)
        if task.outcome != "Ready":
            answer = m.StabilityResultsGetResponse(id=task.id, name="content_moderation",
                                                   errors=["Your request was flagged by our content moderation system"])
        else:
            answer = m.StabilityResultsGetResponse(id=task.id, finish_reason="SUCCESS",
                                                   result=base64.b64encode(result_png()).decode())
        return web.json_response(answer.model_dump(exclude_none=True))
