"""All settings: one :class:`Config` dataclass and one argparse parser.

Precedence (highest first): command-line flags > ``COMFYUI_*`` environment variables >
config file (``-c/--config FILE``, YAML or JSON; otherwise ``config.yaml``/``config.json`` in
the current directory when present) > defaults.

* Env var names are ``COMFYUI_`` + the option's dest upper-cased (``--max-upload-size`` ->
  ``COMFYUI_MAX_UPLOAD_SIZE``, ``--fp8_e4m3fn-unet`` -> ``COMFYUI_FP8_E4M3FN_UNET``); ``-w/--cwd``
  also reads ``COMFYUI_CWD``. Booleans accept 1/0, true/false, yes/no, on/off. List options
  accept a comma-separated string or a JSON list. An empty variable counts as unset.
* Config file keys are the flag names with or without dashes (``max-upload-size`` or
  ``max_upload_size``); values may be YAML/JSON scalars, booleans or lists.
* Mutually exclusive groups (``--cache-*``, VRAM modes, precisions) are resolved per group:
  the highest-precedence source that turns on any member of a group decides the whole group,
  so ``COMFYUI_LOWVRAM=1`` plus ``--highvram`` gives highvram only.

``current()`` / ``set_current()`` read and replace the active runtime's config (what
``comfy.cli_args.args`` shows custom nodes; see :mod:`comfyui.runtime`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

ENV_PREFIX = "COMFYUI_"
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")


_SDPA = "attention always runs PyTorch's scaled_dot_product_attention"
# Flags ComfyUI has that are accepted (scripts and launchers pass them) but change nothing in
# this implementation, and why. --help says so, and the start-up log names each one given.
INERT_FLAGS: dict[str, str] = {
    "--use-split-cross-attention": _SDPA, "--use-quad-cross-attention": _SDPA,
    "--use-pytorch-cross-attention": _SDPA + " already", "--use-sage-attention": _SDPA,
    "--use-flash-attention": _SDPA, "--disable-xformers": "xformers is never used",
    "--force-upcast-attention": _SDPA + " (fp32 softmax accumulation)",
    "--dont-upcast-attention": _SDPA + " (fp32 softmax accumulation)",
    "--async-offload": "weights are offloaded synchronously",
    "--mmap-torch-files": ".ckpt/.pt files are read with torch.load(weights_only=True)",
    "--fast": "no optional fast paths are implemented",
}


class ConfigError(ValueError):
    """A setting could not be parsed; the message names its source."""


@dataclass(repr=False)
class Config:
    # files
    config: str | None = None
    # network
    listen: str = "127.0.0.1"
    port: int = 8188
    enable_cors_header: str | None = None
    max_upload_size: float = 100.0
    tls_keyfile: str | None = None
    tls_certfile: str | None = None
    multi_user: bool = False
    front_end_root: str | None = None
    front_end_version: str | None = None
    dont_print_server: bool = False
    max_queue_size: int = 65536
    disable_metadata: bool = False
    api_key: str | None = None
    api_key_file: str | None = None
    external_address: str | None = None
    enable_compress_response_body: bool = False
    comfy_api_base: str = "https://api.comfy.org"
    auto_launch: bool = False
    disable_auto_launch: bool = False
    # directories
    base_directory: str | None = None
    output_directory: str | None = None
    input_directory: str | None = None
    temp_directory: str | None = None
    user_directory: str | None = None
    extra_model_paths_config: list[str] = field(default_factory=list)
    create_directories: bool | None = None  # None: the server creates them, batch/embedded use do not
    # execution / cache
    cache_classic: bool = False
    cache_lru: int = 0
    cache_none: bool = False
    disable_all_custom_nodes: bool = False
    whitelist_custom_nodes: list[str] = field(default_factory=list)
    blacklist_custom_nodes: list[str] = field(default_factory=list)
    disable_api_nodes: bool = False
    api_node_keys: str | None = None  # JSON file of per-vendor direct keys / base URLs (docs/api-nodes.md)
    enable_manager: bool = False
    enable_manager_legacy_ui: bool = False
    disable_manager_ui: bool = False
    registry_url: str = "https://api.comfy.org"
    block_runtime_package_installation: bool = False
    workflows: list[str] = field(default_factory=list)
    database_url: str | None = None
    requeue_interrupted: bool = False
    # distributed (comfyui.distributed; docs/distributed.md)
    distributed_queue_connection_uri: str | None = None
    distributed_queue_frontend: bool = False
    distributed_queue_name: str = "comfyui"
    worker_concurrency: int = 1
    worker_health_port: int = 0
    distributed_delivery_limit: int = 3
    output_retention_days: float = 0.0
    output_max_size_gb: float = 0.0
    output_retention_interval: float = 600.0
    panic_when: list[str] = field(default_factory=list)
    default_hashing_function: str = "sha256"
    # devices / memory
    cpu: bool = False
    cuda_device: int | None = None
    default_device: int | None = None
    gpu_only: bool = False
    highvram: bool = False
    normalvram: bool = False
    lowvram: bool = False
    novram: bool = False
    reserve_vram: float | None = None
    disable_smart_memory: bool = False
    disable_mmap: bool = False
    mmap_torch_files: bool = False
    async_offload: bool = False
    deterministic: bool = False
    fast: list[str] = field(default_factory=list)
    # precision
    force_fp32: bool = False
    force_fp16: bool = False
    force_bf16: bool = False
    fp32_unet: bool = False
    fp64_unet: bool = False
    bf16_unet: bool = False
    fp16_unet: bool = False
    fp8_e4m3fn_unet: bool = False
    fp8_e5m2_unet: bool = False
    fp16_vae: bool = False
    fp32_vae: bool = False
    bf16_vae: bool = False
    cpu_vae: bool = False
    fp8_e4m3fn_text_enc: bool = False
    fp8_e5m2_text_enc: bool = False
    fp16_text_enc: bool = False
    fp32_text_enc: bool = False
    bf16_text_enc: bool = False
    # attention
    use_split_cross_attention: bool = False
    use_quad_cross_attention: bool = False
    use_pytorch_cross_attention: bool = False
    use_sage_attention: bool = False
    use_flash_attention: bool = False
    disable_xformers: bool = False
    force_upcast_attention: bool = False
    dont_upcast_attention: bool = False
    # previews / logging / misc
    preview_method: str = "none"
    preview_size: int = 512
    logging_level: str = "INFO"
    log_stdout: bool = False
    quick_test_for_ci: bool = False
    disable_known_models: bool = False
    # slow clients
    header_timeout: float = 75.0
    body_timeout: float = 30.0
    # production API (comfyui.api_server)
    enable_api: bool = False
    api_port: int = 3000
    workflow_dir: str | None = None

    def __repr__(self) -> str:  # never prints a credential (logs, tracebacks, debuggers)
        from .redact import redact_value

        fields = ", ".join(f"{f.name}={redact_value(f.name, getattr(self, f.name))!r}"
                           for f in dataclasses.fields(self))
        return f"Config({fields})"

    # -- derived views -------------------------------------------------------------------
    @property
    def cache_mode(self) -> str:
        """``"none" | "lru" | "classic"``."""
        if self.cache_none:
            return "none"
        if self.cache_lru and self.cache_lru > 0:
            return "lru"
        return "classic"

    @property
    def vram_mode(self) -> str:
        """``"cpu" | "gpu_only" | "highvram" | "normalvram" | "lowvram" | "novram" | "auto"``."""
        for name in ("cpu", "gpu_only", "highvram", "normalvram", "lowvram", "novram"):
            if getattr(self, name):
                return name
        return "auto"

    @property
    def listen_addresses(self) -> list[str]:
        return [a.strip() for a in self.listen.split(",") if a.strip()]

    @property
    def max_upload_size_bytes(self) -> int:
        return int(self.max_upload_size * 1024 * 1024)

    def resolved_database_url(self) -> str:
        """``database_url`` or a sqlite file in the user directory."""
        if self.database_url:
            return self.database_url
        from comfyui import paths

        return "sqlite:///" + os.path.join(paths.get_user_directory(), "comfyui.db")

    def folder_settings(self) -> dict[str, Any]:
        """This config's folders, as :meth:`comfyui.paths.Folders.configure` takes them."""
        return {"base_directory": self.base_directory, "output_directory": self.output_directory,
                "input_directory": self.input_directory, "temp_directory": self.temp_directory,
                "user_directory": self.user_directory,
                "extra_model_paths_config": list(self.extra_model_paths_config),
                "create_directories": self.create_directories}

    def apply_paths(self) -> None:
        """Point the active runtime's folders (:mod:`comfyui.paths`) at this config's directories."""
        from comfyui import paths

        paths.configure(**self.folder_settings())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------
# Parser
# ------------------------------------------------------------------------------------------

class _AppendExtend(argparse.Action):
    """``--opt a b --opt c`` and ``--opt a,b`` all give ``[a, b, c]``."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        items = list(current) if isinstance(current, list) else []
        if not values and self.nargs == "*":
            items.append("all")  # bare `--fast` turns on every optimization
        for v in values:
            items.extend(x for x in (s.strip() for s in v.split(",")) if x)
        setattr(namespace, self.dest, items)


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def _port(value: str) -> int:
    n = int(value)
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {n}")
    return n


def _upper_level(value: str) -> str:
    v = str(value).upper()
    if v not in LOGGING_LEVELS:
        raise argparse.ArgumentTypeError(f"invalid logging level {value!r}; choose from {', '.join(LOGGING_LEVELS)}")
    return v


def _positive_float(value: str) -> float:
    n = float(value)
    if not n > 0 or n != n or n == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value}")
    return n


_port.__name__ = "port"
_positive_float.__name__ = "positive number"
_positive_int.__name__ = "non-negative int"
_upper_level.__name__ = "logging level"

# extra env names for some dests
_ENV_ALIASES = {"base_directory": ["COMFYUI_CWD"]}


def build_parser(prog: str = "comfyui") -> argparse.ArgumentParser:
    """The one parser for every ``comfyui`` setting (shows real defaults in ``--help``)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="ComfyUI: node graph engine and server.",
        epilog="Every --flag can also be set with a COMFYUI_<FLAG> environment variable or in a "
               "YAML/JSON config file (-c). Command line > environment > config file > defaults. "
               "Custom node packs: `comfyui node --help`.",
    )
    p.add_argument("-c", "--config", metavar="CONFIG_FILE", default=None, help="config file path (YAML or JSON)")

    net = p.add_argument_group("server")
    net.add_argument("-H", "--listen", metavar="IP", nargs="?", const="0.0.0.0", default="127.0.0.1",
                     help="IP address(es) to listen on, comma separated (default 127.0.0.1); bare --listen = 0.0.0.0")
    net.add_argument("--port", type=_port, default=8188, help="listen port (default 8188)")
    net.add_argument("--enable-cors-header", metavar="ORIGIN", nargs="?", const="*", default=None,
                     help="enable CORS with the given origin, or '*' when bare")
    net.add_argument("--max-upload-size", type=float, default=100.0, help="maximum upload size in MB (default 100)")
    net.add_argument("--tls-keyfile", default=None, help="TLS key file; enables https with --tls-certfile")
    net.add_argument("--tls-certfile", default=None, help="TLS certificate file")
    net.add_argument("--multi-user", action="store_true", help="per-user storage")
    net.add_argument("--front-end-root", default=None, help="local directory of the frontend to serve")
    net.add_argument("--front-end-version", default=None, help="frontend version ([owner]/[repo]@version)")
    net.add_argument("--dont-print-server", action="store_true", help="don't print server output")
    net.add_argument("--max-queue-size", type=_positive_int, default=65536,
                     help="reject prompts when the queue holds this many (default 65536)")
    net.add_argument("--disable-metadata", action="store_true", help="don't save prompt metadata in files")
    net.add_argument("--api-key", default=None,
                     help="require this key on every request (Authorization: Bearer KEY, or ?token=KEY "
                          "once in the browser). A value given here is visible to every local user "
                          "through ps: prefer --api-key-file or the COMFYUI_API_KEY environment variable")
    net.add_argument("--api-key-file", metavar="PATH", default=None,
                     help="read the API key (see --api-key) from this file (its first line)")
    net.add_argument("--external-address", default=None, help="base URL used for external addresses in the API")
    net.add_argument("--enable-compress-response-body", action="store_true", help="gzip response bodies")
    net.add_argument("--comfy-api-base", default="https://api.comfy.org",
                     help="base URL of the Comfy API proxy that API nodes call")
    launch = net.add_mutually_exclusive_group()
    launch.add_argument("--auto-launch", action="store_true", help="open the browser on start")
    launch.add_argument("--disable-auto-launch", action="store_true", help="don't open the browser")

    d = p.add_argument_group("directories")
    d.add_argument("-w", "--cwd", "--base-directory", dest="base_directory", metavar="BASE_DIRECTORY", default=None,
                   help="workspace for models/, custom_nodes/, input/, output/, temp/, user/ "
                        "(default $COMFYUI_HOME or ~/.local/share/comfyui)")
    d.add_argument("--output-directory", default=None, help="output directory (overrides --base-directory)")
    d.add_argument("--input-directory", default=None, help="input directory (overrides --base-directory)")
    d.add_argument("--temp-directory", default=None, help="temp directory (overrides --base-directory)")
    d.add_argument("--user-directory", default=None, help="user directory (overrides --base-directory)")
    d.add_argument("--extra-model-paths-config", metavar="PATH", nargs="+", action=_AppendExtend, default=[],
                   help="extra_model_paths.yaml file(s); repeatable or comma separated")
    d.add_argument("--create-directories", action=argparse.BooleanOptionalAction, default=None,
                   help="create the workspace folders (models/ and its sub-folders, input/, output/, temp/, "
                        "user/) at start; the server does by default, batch mode only with this flag")

    ex = p.add_argument_group("execution")
    cache = ex.add_mutually_exclusive_group()
    cache.add_argument("--cache-classic", action="store_true", help="classic (aggressive) caching (default)")
    cache.add_argument("--cache-lru", metavar="N", type=_positive_int, default=0,
                       help="LRU cache keeping at most N node results")
    cache.add_argument("--cache-none", action="store_true", help="no caching: every node runs every time")
    ex.add_argument("--disable-all-custom-nodes", action="store_true", help="don't load custom nodes")
    ex.add_argument("--whitelist-custom-nodes", nargs="+", action=_AppendExtend, default=[],
                    help="custom node packs to load even with --disable-all-custom-nodes")
    ex.add_argument("--blacklist-custom-nodes", nargs="+", action=_AppendExtend, default=[],
                    help="custom node packs never to load (shell globs)")
    ex.add_argument("--disable-api-nodes", action="store_true", help="don't load API nodes")
    ex.add_argument("--api-node-keys", metavar="FILE", default=None,
                    help="JSON file of per-vendor API keys: API nodes of those vendors call them directly")
    ex.add_argument("--enable-manager", action="store_true",
                    help="serve the frontend's Manager dialog (list, install, update, disable custom node packs)")
    ex.add_argument("--enable-manager-legacy-ui", action="store_true",
                    help="with the comfyui-manager package: its legacy UI instead of the frontend's dialog")
    ex.add_argument("--disable-manager-ui", action="store_true",
                    help="with the comfyui-manager package: its background features only, no UI")
    ex.add_argument("--registry-url", default="https://api.comfy.org",
                    help="Comfy registry that `comfyui node install ID` and the Manager install packs from "
                         "(default https://api.comfy.org)")
    ex.add_argument("--block-runtime-package-installation", action="store_true",
                    help="the Manager (--enable-manager) never pip installs a pack's requirements")
    ex.add_argument("--workflows", metavar="FILE", nargs="+", action=_AppendExtend, default=[],
                    help="run these API-format workflow files and exit ('-' = stdin)")
    ex.add_argument("--database-url", default=None,
                    help="SQLAlchemy database URL (default: sqlite file in the user directory)")
    ex.add_argument("--requeue-interrupted", action="store_true",
                    help="on start, requeue prompts that were running when the server stopped")
    dq = p.add_argument_group("distributed (RabbitMQ; docs/distributed.md)")
    dq.add_argument("--distributed-queue-connection-uri", default=None, metavar="AMQP_URI",
                    help="AMQP broker URI (amqp://user:password@host:5672/vhost): comfyui-worker consumes "
                         "prompts from it; with --distributed-queue-frontend the server submits to it")
    dq.add_argument("--distributed-queue-frontend", action="store_true",
                    help="serve the HTTP/WebSocket API and submit prompts to the broker instead of running them")
    dq.add_argument("--distributed-queue-name", default="comfyui",
                    help="prefix of the broker's queues and exchanges (one cluster per name)")
    dq.add_argument("--worker-concurrency", type=int, default=1,
                    help="prompts a worker takes from the broker at a time (its prefetch)")
    dq.add_argument("--worker-health-port", type=int, default=0, metavar="PORT",
                    help="comfyui-worker: serve GET /health and /ready on this port (on --listen; 0 = none)")
    dq.add_argument("--distributed-delivery-limit", type=int, default=3,
                    help="redeliveries of a prompt (its worker died or lost the broker) before it is "
                         "dead-lettered and reported failed (a prompt that keeps killing workers)")
    ex.add_argument("--output-retention-days", type=float, default=0.0,
                    help="delete output files older than this many days (0 = keep)")
    ex.add_argument("--output-max-size-gb", type=float, default=0.0,
                    help="delete the oldest output files while the output folder is larger (0 = no limit)")
    ex.add_argument("--output-retention-interval", type=float, default=600.0,
                    help="seconds between output retention passes")
    ex.add_argument("--panic-when", nargs="+", action=_AppendExtend, default=[],
                    help="exception class names that make the process exit")
    ex.add_argument("--default-hashing-function", choices=["md5", "sha1", "sha256", "sha512"], default="sha256",
                    help="hash used for duplicate file comparison")

    dev = p.add_argument_group("devices and memory")
    dev.add_argument("--cuda-device", metavar="DEVICE_ID", type=int, default=None,
                     help="the CUDA device to use; others are hidden")
    dev.add_argument("--default-device", metavar="DEFAULT_DEVICE_ID", type=int, default=None,
                     help="the default device; others stay visible")
    vram = dev.add_mutually_exclusive_group()
    vram.add_argument("--gpu-only", action="store_true", help="store and run everything on the GPU")
    vram.add_argument("--highvram", action="store_true", help="keep models in GPU memory")
    vram.add_argument("--normalvram", action="store_true", help="force normal VRAM use")
    vram.add_argument("--lowvram", action="store_true", help="split the unet to use less VRAM")
    vram.add_argument("--novram", action="store_true", help="when lowvram isn't enough")
    vram.add_argument("--cpu", action="store_true", help="use the CPU for everything (slow)")
    dev.add_argument("--reserve-vram", type=float, default=None, help="GB of VRAM to leave for other software")
    dev.add_argument("--disable-smart-memory", action="store_true", help="aggressively offload models to RAM")
    dev.add_argument("--disable-mmap", action="store_true", help="don't mmap safetensors files")
    dev.add_argument("--mmap-torch-files", action="store_true", help="mmap .ckpt/.pt files")
    dev.add_argument("--async-offload", action="store_true", help="asynchronous weight offloading")
    dev.add_argument("--deterministic", action="store_true", help="use deterministic torch algorithms")
    dev.add_argument("--fast", nargs="*", action=_AppendExtend, default=[],
                     help="enable optional speed optimizations")

    prec = p.add_argument_group("precision")
    fp = prec.add_mutually_exclusive_group()
    fp.add_argument("--force-fp32", action="store_true", help="force fp32")
    fp.add_argument("--force-fp16", action="store_true", help="force fp16")
    fp.add_argument("--force-bf16", action="store_true", help="force bf16")
    unet = prec.add_mutually_exclusive_group()
    unet.add_argument("--fp32-unet", action="store_true", help="diffusion model in fp32")
    unet.add_argument("--fp64-unet", action="store_true", help="diffusion model in fp64")
    unet.add_argument("--bf16-unet", action="store_true", help="diffusion model in bf16")
    unet.add_argument("--fp16-unet", action="store_true", help="diffusion model in fp16")
    unet.add_argument("--fp8_e4m3fn-unet", action="store_true", help="store unet weights in fp8_e4m3fn")
    unet.add_argument("--fp8_e5m2-unet", action="store_true", help="store unet weights in fp8_e5m2")
    vae = prec.add_mutually_exclusive_group()
    vae.add_argument("--fp16-vae", action="store_true", help="VAE in fp16 (may give black images)")
    vae.add_argument("--fp32-vae", action="store_true", help="VAE in fp32")
    vae.add_argument("--bf16-vae", action="store_true", help="VAE in bf16")
    prec.add_argument("--cpu-vae", action="store_true", help="run the VAE on the CPU")
    te = prec.add_mutually_exclusive_group()
    te.add_argument("--fp8_e4m3fn-text-enc", action="store_true", help="text encoder weights in fp8_e4m3fn")
    te.add_argument("--fp8_e5m2-text-enc", action="store_true", help="text encoder weights in fp8_e5m2")
    te.add_argument("--fp16-text-enc", action="store_true", help="text encoder weights in fp16")
    te.add_argument("--fp32-text-enc", action="store_true", help="text encoder weights in fp32")
    te.add_argument("--bf16-text-enc", action="store_true", help="text encoder weights in bf16")

    att = p.add_argument_group("attention")
    attn = att.add_mutually_exclusive_group()
    attn.add_argument("--use-split-cross-attention", action="store_true", help="split cross attention")
    attn.add_argument("--use-quad-cross-attention", action="store_true", help="sub-quadratic cross attention")
    attn.add_argument("--use-pytorch-cross-attention", action="store_true", help="pytorch SDPA (default)")
    attn.add_argument("--use-sage-attention", action="store_true", help="sage attention")
    attn.add_argument("--use-flash-attention", action="store_true", help="flash attention")
    att.add_argument("--disable-xformers", action="store_true", help="disable xformers")
    upcast = att.add_mutually_exclusive_group()
    upcast.add_argument("--force-upcast-attention", action="store_true", help="force attention upcasting")
    upcast.add_argument("--dont-upcast-attention", action="store_true", help="never upcast attention")

    misc = p.add_argument_group("previews and logging")
    misc.add_argument("--preview-method", choices=PREVIEW_METHODS, default="none",
                      help="default preview method for sampler nodes")
    misc.add_argument("--preview-size", type=_positive_int, default=512, help="maximum preview size")
    misc.add_argument("--verbose", dest="logging_level", metavar="LEVEL", nargs="?", const="DEBUG", default="INFO",
                      type=_upper_level, help="logging level; bare --verbose = DEBUG")
    misc.add_argument("--logging-level", dest="logging_level", type=_upper_level, default="INFO",
                      help=f"logging level ({', '.join(LOGGING_LEVELS)})")
    misc.add_argument("--log-stdout", action="store_true", help="log to stdout instead of stderr")
    misc.add_argument("--quick-test-for-ci", action="store_true",
                      help="quick start-up test: fail if nodes cannot be imported, then exit")
    misc.add_argument("--disable-known-models", action="store_true",
                      help="known models (the files the templates and tutorials name) are neither offered in the "
                           "loaders' lists nor downloaded when a prompt names one")
    from . import __version__

    misc.add_argument("--version", action="version", version=f"comfyui {__version__}", dest=argparse.SUPPRESS,
                      help="print the version and exit")
    for action in p._actions:  # say so in --help where a flag is accepted but changes nothing here
        for option in action.option_strings:
            reason = INERT_FLAGS.get(option)
            if reason:
                action.help = f"{action.help}; accepted for compatibility, no effect: {reason}"

    slow = p.add_argument_group("slow clients")
    slow.add_argument("--header-timeout", metavar="SECONDS", type=_positive_float, default=75.0,
                      help="close a connection whose request headers are not complete this many seconds "
                           "after it opened or after its previous answer; this is also the idle keep-alive "
                           "time, so keep it above a reverse proxy's upstream keep-alive (default 75)")
    slow.add_argument("--body-timeout", metavar="SECONDS", type=_positive_float, default=30.0,
                      help="answer 408 and close a connection whose request body delivers under 1 KiB "
                           "in this many seconds while the server waits for it (default 30)")
    api = p.add_argument_group("production API (docs/production-api.md)")
    api.add_argument("--enable-api", action="store_true",
                     help="also serve the stateless production API (comfyui-api's routes) on --api-port")
    api.add_argument("--api-port", type=_port, default=3000, help="production API port (default 3000)")
    api.add_argument("--workflow-dir", default=None, metavar="DIR",
                     help="mount each Python workflow module under DIR as POST /workflow/<path> "
                          "(env WORKFLOW_DIR; see docs/production-api.md)")
    return p


# ------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def _settable_actions(parser: argparse.ArgumentParser) -> dict[str, list[argparse.Action]]:
    by_dest: dict[str, list[argparse.Action]] = {}
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction)) or a.dest in ("help", "config"):
            continue
        by_dest.setdefault(a.dest, []).append(a)
    return by_dest


def _convert(action: argparse.Action, value: Any, source: str) -> Any:
    """Convert an env/config-file value with the same rules the CLI uses."""
    try:
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)):
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            s = str(value).strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            raise ConfigError(f"{source}: expected a boolean, got {value!r}")
        if isinstance(action, _AppendExtend):
            if isinstance(value, str):
                s = value.strip()
                if s.startswith("["):
                    value = json.loads(s)
                else:
                    value = [x.strip() for x in s.split(",")]
            if not isinstance(value, (list, tuple)):
                value = [value]
            return [str(x) for x in value if str(x).strip()]
        if action.nargs == "?" and action.const is not None and value is True:
            return action.const
        if action.type is not None and value is not None:
            value = action.type(value if not isinstance(value, bool) else str(value))
        elif value is not None and not isinstance(value, str):
            value = str(value)
        if action.choices is not None and value not in action.choices:
            raise ConfigError(f"{source}: invalid choice {value!r} (choose from {', '.join(map(str, action.choices))})")
        return value
    except ConfigError:
        raise
    except (ValueError, TypeError, argparse.ArgumentTypeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{source}: invalid value {value!r}: {e}") from None


def _read_config_file(path: str) -> dict[str, Any]:
    p = pathlib.Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text) if text.strip() else {}
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as e:  # yaml.YAMLError / JSONDecodeError
        raise ConfigError(f"config file {path} is not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping of settings, got {type(data).__name__}")
    return data


def _file_layer(data: Mapping[str, Any], actions: dict[str, list[argparse.Action]], path: str,
                strict: bool) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    option_to_dest = {}
    for dest, acts in actions.items():
        option_to_dest[dest] = dest
        for a in acts:
            for o in a.option_strings:
                if o.startswith("--"):
                    option_to_dest[o[2:].replace("-", "_")] = dest
    for key, value in data.items():
        if value is None:
            continue  # `key:` with no value = unset
        norm = str(key).lstrip("-").replace("-", "_")
        dest = option_to_dest.get(norm) or option_to_dest.get(norm.lower())
        if dest is None:
            if strict:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            logger.warning("config file %s: ignoring unknown setting %r", path, key)
            continue
        layer[dest] = _convert(actions[dest][-1], value, f"config file {path}: {key}")
    return layer


def _env_layer(env: Mapping[str, str], actions: dict[str, list[argparse.Action]]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for dest, acts in actions.items():
        for name in [ENV_PREFIX + dest.upper(), *_ENV_ALIASES.get(dest, [])]:
            if name in env:
                raw = env[name]
                if raw.strip() == "":
                    continue  # empty = unset (never "bare flag": COMFYUI_LISTEN= must not expose the server)
                # --verbose and --logging-level share a dest; use the plain-valued action for env
                layer[dest] = _convert(acts[-1], raw, f"environment variable {name}")
                break
    return layer


def _is_on(value: Any, default: Any) -> bool:
    return value not in (None, False, 0, "", []) and value != default


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, *,
                discover_config_file: bool = True) -> Config:
    """Build a :class:`Config` from CLI flags, ``COMFYUI_*`` env vars, a config file and defaults.

    ``argv`` defaults to ``sys.argv[1:]``; ``env`` to ``os.environ``. Invalid values raise
    :class:`ConfigError` (env / file) or exit with argparse's usage message (CLI).
    """
    import sys

    if argv is None:
        argv = sys.argv[1:]
    if env is None:
        env = os.environ
    parser = build_parser()
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(Config)}
    actions = _settable_actions(parser)

    # parse the CLI with defaults suppressed so we learn exactly which flags were given
    for a in parser._actions:
        if not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
            a.default = argparse.SUPPRESS
    cli = vars(parser.parse_args(list(argv)))

    config_path = cli.pop("config", None) or env.get(ENV_PREFIX + "CONFIG") or None
    file_layer: dict[str, Any] = {}
    if config_path:
        file_layer = _file_layer(_read_config_file(config_path), actions, config_path, strict=True)
    elif discover_config_file:
        for name in ("config.yaml", "config.yml", "config.json"):
            if os.path.isfile(name):
                config_path = os.path.abspath(name)
                file_layer = _file_layer(_read_config_file(config_path), actions, config_path, strict=False)
                break
    env_layer = _env_layer(env, actions)

    groups = [[a.dest for a in g._group_actions] for g in parser._mutually_exclusive_groups]
    merged = dict(defaults)
    for name, layer in (("config file", file_layer), ("environment", env_layer), ("command line", cli)):
        for members in groups:
            on = [d for d in members if d in layer and _is_on(layer[d], defaults[d])]
            if len(on) > 1 and name != "command line":
                raise ConfigError(f"{name}: settings {', '.join(on)} are mutually exclusive")
            if on:
                for d in members:
                    if d not in on:
                        merged[d] = defaults[d]
        merged.update(layer)
    merged["config"] = config_path
    if merged.get("api_key_file"):
        if merged.get("api_key"):
            raise ConfigError("give the API key once: --api-key (or COMFYUI_API_KEY) or --api-key-file")
        merged["api_key"] = read_api_key_file(merged["api_key_file"])
    config = Config(**merged)
    register_secrets(config)
    return config


def report_inert_flags(config: Any) -> list[str]:
    """Log (INFO) each flag of :data:`INERT_FLAGS` that ``config`` turns on; -> their names."""
    parser = build_parser()
    given = []
    for action in parser._actions:
        option = next((o for o in action.option_strings if o in INERT_FLAGS), None)
        if option is None:
            continue
        value = getattr(config, action.dest, None)
        if value not in (None, False, [], "") and value != action.default:
            given.append(option)
            logger.info("%s has no effect here: %s", option, INERT_FLAGS[option])
    return given


def read_api_key_file(path: str) -> str:
    """The first line of ``path``, stripped; ConfigError when unreadable or empty."""
    try:
        text = pathlib.Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the API key file {path}: {e}") from None
    key = (text.splitlines() or [""])[0].strip()
    if not key:
        raise ConfigError(f"the API key file {path} is empty")
    return key


def register_secrets(config: Any) -> None:
    """Register the credentials in ``config`` (API key, passwords in URLs, any setting named
    like a key or secret) with :mod:`comfyui.redact`, so no log line or answer shows them."""
    import urllib.parse

    from . import redact

    if config is None:
        return
    if isinstance(config, Mapping):
        items = list(config.items())
    elif dataclasses.is_dataclass(config):
        items = [(f.name, getattr(config, f.name, None)) for f in dataclasses.fields(config)]
    else:
        items = list(getattr(config, "__dict__", {}).items())
    for name, value in items:
        if not isinstance(value, str) or not value or not redact.is_secret_name(name):
            continue
        if "://" in value:
            password = redact.url_password(value)
            if password:
                redact.register_secret(password)
                redact.register_secret(urllib.parse.unquote(password))
        else:
            redact.register_secret(value)


def current() -> Config:
    """The active runtime's config (:mod:`comfyui.runtime`; defaults until one is set)."""
    from comfyui import runtime

    return runtime.current().config


def set_current(cfg: Config) -> None:
    """Make ``cfg`` the active runtime's config. Its folders stay as they are (custom nodes may
    have added to them); :meth:`Config.apply_paths` applies those."""
    from comfyui import runtime

    runtime.current().config = cfg
