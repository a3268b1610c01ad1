import argparse
import dataclasses
import json
import os

import pytest

from comfyui import paths
from comfyui.config import Config, ConfigError, build_parser, load_config


def load(argv=(), env=None, **kw):
    kw.setdefault("discover_config_file", False)
    return load_config(list(argv), env or {}, **kw)


def test_defaults():
    c = load()
    assert c.listen == "127.0.0.1"
    assert c.port == 8188
    assert c.max_upload_size == 100
    assert c.max_upload_size_bytes == 100 * 1024 * 1024
    assert c.enable_cors_header is None
    assert c.preview_method == "none"
    assert c.cache_mode == "classic"
    assert c.vram_mode == "auto"
    assert c.logging_level == "INFO"
    assert c.extra_model_paths_config == [] and c.workflows == []
    assert c.base_directory is None
    assert c == Config()  # load with nothing set equals the dataclass defaults


def test_every_parser_option_is_a_config_field():
    fields = {f.name for f in dataclasses.fields(Config)}
    dests = {a.dest for a in build_parser()._actions if a.dest not in ("help", argparse.SUPPRESS)}  # argparse: --help, --version
    assert dests == fields


def test_bare_flags_take_their_const():
    c = load(["--listen", "--enable-cors-header", "--verbose"])
    assert c.listen == "0.0.0.0"
    assert c.enable_cors_header == "*"
    assert c.logging_level == "DEBUG"
    c = load(["--listen", "10.0.0.2,127.0.0.1", "--enable-cors-header", "https://a.example"])
    assert c.listen_addresses == ["10.0.0.2", "127.0.0.1"]
    assert c.enable_cors_header == "https://a.example"
    assert load(["--logging-level", "warning"]).logging_level == "WARNING"


def test_cli_flags_parse():
    c = load(["--port", "9000", "--max-upload-size", "2.5", "--tls-keyfile", "k.pem", "--tls-certfile", "c.pem",
              "--multi-user", "--front-end-root", "/fe", "--dont-print-server", "--max-queue-size", "3",
              "--disable-metadata", "--api-key", "sekrit", "--output-directory", "/o", "--input-directory", "/i",
              "--temp-directory", "/t", "--user-directory", "/u", "--create-directories",
              "--disable-all-custom-nodes", "--whitelist-custom-nodes", "a", "b", "--blacklist-custom-nodes", "x*",
              "--database-url", "sqlite:///:memory:", "--requeue-interrupted", "--cuda-device", "1",
              "--fp8_e4m3fn-unet", "--bf16-vae", "--cpu-vae", "--fp16-text-enc", "--reserve-vram", "1.5",
              "--disable-smart-memory", "--disable-mmap", "--preview-method", "taesd", "--preview-size", "256",
              "--quick-test-for-ci", "--disable-api-nodes", "--enable-manager", "--novram"])
    assert c.port == 9000 and c.max_upload_size == 2.5
    assert (c.tls_keyfile, c.tls_certfile) == ("k.pem", "c.pem")
    assert c.multi_user and c.dont_print_server and c.disable_metadata and c.create_directories
    assert c.front_end_root == "/fe" and c.max_queue_size == 3 and c.api_key == "sekrit"
    assert (c.output_directory, c.input_directory, c.temp_directory, c.user_directory) == ("/o", "/i", "/t", "/u")
    assert c.disable_all_custom_nodes and c.whitelist_custom_nodes == ["a", "b"] and c.blacklist_custom_nodes == ["x*"]
    assert c.database_url == "sqlite:///:memory:" and c.requeue_interrupted and c.cuda_device == 1
    assert c.fp8_e4m3fn_unet and c.bf16_vae and c.cpu_vae and c.fp16_text_enc and c.reserve_vram == 1.5
    assert c.disable_smart_memory and c.disable_mmap and c.preview_method == "taesd" and c.preview_size == 256
    assert c.quick_test_for_ci and c.disable_api_nodes and c.enable_manager and c.vram_mode == "novram"


def test_base_directory_aliases():
    assert load(["--base-directory", "/w"]).base_directory == "/w"
    assert load(["--cwd", "/w2"]).base_directory == "/w2"
    assert load(["-w", "/w3"]).base_directory == "/w3"
    assert load(env={"COMFYUI_CWD": "/w4"}).base_directory == "/w4"
    assert load(env={"COMFYUI_BASE_DIRECTORY": "/w5"}).base_directory == "/w5"


def test_repeatable_and_comma_lists():
    c = load(["--extra-model-paths-config", "a.yaml", "b.yaml", "--extra-model-paths-config", "c.yaml,d.yaml"])
    assert c.extra_model_paths_config == ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
    assert load(["--workflows", "-"]).workflows == ["-"]
    assert load(["--workflows", "w1.json", "w2.json"]).workflows == ["w1.json", "w2.json"]


def test_invalid_cli_values_exit(capsys):
    for argv in (["--port", "abc"], ["--port", "70000"], ["--preview-method", "bogus"], ["--cache-lru", "-1"],
                 ["--highvram", "--lowvram"], ["--cache-none", "--cache-lru", "3"], ["--no-such-flag"]):
        with pytest.raises(SystemExit):
            load(argv)


def test_env_vars():
    env = {"COMFYUI_PORT": "9100", "COMFYUI_LISTEN": "0.0.0.0", "COMFYUI_MULTI_USER": "true",
           "COMFYUI_DISABLE_METADATA": "0", "COMFYUI_EXTRA_MODEL_PATHS_CONFIG": "x.yaml, y.yaml",
           "COMFYUI_BLACKLIST_CUSTOM_NODES": '["bad*", "worse"]', "COMFYUI_FP8_E4M3FN_UNET": "yes",
           "COMFYUI_PREVIEW_METHOD": "latent2rgb", "COMFYUI_CACHE_LRU": "10", "COMFYUI_ENABLE_CORS_HEADER": "",
           "COMFYUI_LOGGING_LEVEL": "error", "UNRELATED": "1"}
    c = load(env=env)
    assert c.port == 9100 and c.listen == "0.0.0.0" and c.multi_user is True and c.disable_metadata is False
    assert c.extra_model_paths_config == ["x.yaml", "y.yaml"]
    assert c.blacklist_custom_nodes == ["bad*", "worse"]
    assert c.fp8_e4m3fn_unet and c.preview_method == "latent2rgb" and c.cache_mode == "lru" and c.cache_lru == 10
    assert c.enable_cors_header is None  # empty value = unset
    assert c.logging_level == "ERROR"
    assert load(env={"COMFYUI_LISTEN": ""}).listen == "127.0.0.1"
    assert load(env={"COMFYUI_ENABLE_CORS_HEADER": "*"}).enable_cors_header == "*"


@pytest.mark.parametrize("env,needle", [
    ({"COMFYUI_PORT": "eighty"}, "COMFYUI_PORT"),
    ({"COMFYUI_MULTI_USER": "maybe"}, "COMFYUI_MULTI_USER"),
    ({"COMFYUI_PREVIEW_METHOD": "sixel"}, "COMFYUI_PREVIEW_METHOD"),
    ({"COMFYUI_HIGHVRAM": "1", "COMFYUI_LOWVRAM": "1"}, "mutually exclusive"),
])
def test_bad_env_values_name_the_variable(env, needle):
    with pytest.raises(ConfigError, match=needle):
        load(env=env)


def test_precedence_cli_over_env_over_file_over_default(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 7000\nmax-upload-size: 5\npreview_method: auto\nmulti-user: true\n")
    env = {"COMFYUI_PORT": "7100", "COMFYUI_MAX_UPLOAD_SIZE": "6"}
    c = load(["-c", str(cfg), "--port", "7200"], env)
    assert c.port == 7200             # CLI
    assert c.max_upload_size == 6     # env beats file
    assert c.preview_method == "auto"  # file beats default
    assert c.multi_user is True
    assert c.listen == "127.0.0.1"    # default
    assert c.config == str(cfg)
    c = load(["-c", str(cfg)], env)
    assert c.port == 7100
    c = load(["-c", str(cfg)])
    assert c.port == 7000


def test_env_false_overrides_file_true(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"disable_metadata": True, "--dont-print-server": True}))
    c = load(["--config", str(cfg)], {"COMFYUI_DISABLE_METADATA": "false"})
    assert c.disable_metadata is False
    assert c.dont_print_server is True


def test_config_file_from_env_variable(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 8001\n")
    assert load(env={"COMFYUI_CONFIG": str(cfg)}).port == 8001


def test_mutually_exclusive_groups_follow_precedence(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("cache-none: true\nlowvram: true\nfp16-vae: true\n")
    c = load(["-c", str(cfg)], {"COMFYUI_CACHE_LRU": "4"})
    assert c.cache_mode == "lru" and c.cache_none is False
    assert c.vram_mode == "lowvram"
    c = load(["-c", str(cfg), "--highvram", "--cache-classic"], {"COMFYUI_CACHE_LRU": "4"})
    assert c.vram_mode == "highvram" and c.lowvram is False
    assert c.cache_mode == "classic" and c.cache_lru == 0 and c.cache_none is False
    assert c.fp16_vae  # untouched group keeps the file's value
    assert load(["-c", str(cfg), "--cpu"]).vram_mode == "cpu"


def test_config_file_values_and_lists(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen: true\nextra-model-paths-config:\n  - a.yaml\n  - b.yaml\nwhitelist_custom_nodes: p1,p2\n"
                   "cuda-device: 0\nverbose: debug\n")
    c = load(["-c", str(cfg)])
    assert c.listen == "0.0.0.0"
    assert c.extra_model_paths_config == ["a.yaml", "b.yaml"]
    assert c.whitelist_custom_nodes == ["p1", "p2"]
    assert c.cuda_device == 0
    assert c.logging_level == "DEBUG"


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(["-c", str(tmp_path / "missing.yaml")])
    unknown = tmp_path / "u.yaml"
    unknown.write_text("portt: 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'portt'"):
        load(["-c", str(unknown)])
    bad = tmp_path / "b.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load(["-c", str(bad)])
    scalar = tmp_path / "s.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="mapping"):
        load(["-c", str(scalar)])
    badval = tmp_path / "v.yaml"
    badval.write_text("port: lots\n")
    with pytest.raises(ConfigError, match="port"):
        load(["-c", str(badval)])


def test_config_yaml_discovered_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("port: 8555\nsomething_from_another_tool: 1\n")
    c = load_config([], {})
    assert c.port == 8555
    assert c.config == str(tmp_path / "config.yaml")
    assert load_config([], {}, discover_config_file=False).port == 8188


def test_apply_paths(tmp_path, workspace):
    base = tmp_path / "ws2"
    extra = tmp_path / "extra.yaml"
    (tmp_path / "shared_loras").mkdir()
    (tmp_path / "shared_loras" / "z.safetensors").write_bytes(b"x")
    extra.write_text(f"mine:\n  loras: {tmp_path / 'shared_loras'}\n")
    c = load(["--base-directory", str(base), "--output-directory", str(tmp_path / "outs"), "--create-directories",
              "--extra-model-paths-config", str(extra)])
    c.apply_paths()
    assert paths.models_dir == str(base / "models")
    assert paths.get_output_directory() == str(tmp_path / "outs")
    assert paths.get_input_directory() == str(base / "input")
    assert (base / "models" / "checkpoints").is_dir() and (tmp_path / "outs").is_dir()
    assert paths.get_filename_list("loras") == ["z.safetensors"]
    assert c.resolved_database_url() == "sqlite:///" + os.path.join(str(base / "user"), "comfyui.db")
