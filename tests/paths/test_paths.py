import os
import pathlib
import textwrap
import time

import pytest

from comfyui import paths
from comfyui.paths import PathEscapeError, safe_join

STANDARD = ["checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
            "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
            "latent_upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
            "model_patches", "audio_encoders"]


def touch(p: pathlib.Path, data: bytes = b"x") -> pathlib.Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


# ---------------------------------------------------------------- default workspace / configure

def test_default_workspace_honours_comfyui_home(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYUI_HOME", str(tmp_path / "home"))
    try:
        paths.configure(base_directory=None)
        assert paths.base_path == str(tmp_path / "home")
        assert paths.models_dir == str(tmp_path / "home" / "models")
        assert paths.get_output_directory() == str(tmp_path / "home" / "output")
        assert not (tmp_path / "home").exists()  # configure never creates dirs unless asked
    finally:
        monkeypatch.delenv("COMFYUI_HOME")
        paths.configure(base_directory=None)


def test_default_workspace_without_env(monkeypatch, tmp_path):
    monkeypatch.delenv("COMFYUI_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.default_base_directory() == tmp_path / "xdg" / "comfyui"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert paths.default_base_directory() == pathlib.Path.home() / ".local" / "share" / "comfyui"


def test_workspace_layout(workspace):
    for d in ("input", "output", "temp", "user", "custom_nodes", "models/checkpoints", "models/clip",
              "models/text_encoders", "models/unet", "models/diffusion_models", "models/t2i_adapter"):
        assert (workspace / d).is_dir(), d
    assert paths.models_dir == str(workspace / "models")
    assert paths.get_input_directory() == str(workspace / "input")
    assert paths.get_temp_directory() == str(workspace / "temp")
    assert paths.get_user_directory() == str(workspace / "user")
    assert paths.get_custom_nodes_directories() == [str(workspace / "custom_nodes")]
    for name in STANDARD:
        assert name in paths.folder_names_and_paths, name
    assert paths.folder_names_and_paths["configs"][1] == {".yaml"}
    assert ".safetensors" in paths.folder_names_and_paths["loras"][1]
    assert paths.supported_pt_extensions >= {".ckpt", ".pt", ".bin", ".pth", ".safetensors", ".sft"}


def test_configure_overrides_individual_directories(tmp_path):
    try:
        paths.configure(base_directory=tmp_path / "base", output_directory=tmp_path / "out",
                        input_directory=tmp_path / "in", temp_directory=tmp_path / "tmp",
                        user_directory=tmp_path / "usr", create_directories=True)
        assert paths.get_output_directory() == str(tmp_path / "out")
        assert paths.get_directory_by_type("output") == str(tmp_path / "out")
        assert paths.get_directory_by_type("input") == str(tmp_path / "in")
        assert paths.get_directory_by_type("temp") == str(tmp_path / "tmp")
        assert paths.get_directory_by_type("models") is None
        assert (tmp_path / "out").is_dir() and (tmp_path / "usr").is_dir()
        assert not (tmp_path / "base" / "output").exists()
    finally:
        paths.configure(base_directory=None)


def test_setters(workspace, tmp_path):
    paths.set_output_directory(tmp_path / "elsewhere")
    assert paths.get_output_directory() == str(tmp_path / "elsewhere")
    paths.set_input_directory(str(tmp_path / "i"))
    assert paths.get_directory_by_type("input") == str(tmp_path / "i")


# ---------------------------------------------------------------- listing

def test_get_filename_list_recursive_sorted_filtered(workspace):
    ck = workspace / "models" / "checkpoints"
    touch(ck / "b.safetensors")
    touch(ck / "a.ckpt")
    touch(ck / "sub" / "deep" / "c.SAFETENSORS")
    touch(ck / "notes.txt")
    touch(ck / ".git" / "x.safetensors")
    assert paths.get_filename_list("checkpoints") == ["a.ckpt", "b.safetensors", "sub/deep/c.SAFETENSORS"]
    assert paths.get_filename_list("nonexistent_folder") == []


def test_filename_list_cache_sees_new_files(workspace):
    lora_dir = workspace / "models" / "loras"
    touch(lora_dir / "sub" / "one.safetensors")
    assert paths.get_filename_list("loras") == ["sub/one.safetensors"]
    # cached: same object content without rescanning; a new file in a subdir invalidates
    time.sleep(0.01)
    touch(lora_dir / "sub" / "two.safetensors")
    assert paths.get_filename_list("loras") == ["sub/one.safetensors", "sub/two.safetensors"]
    os.remove(lora_dir / "sub" / "one.safetensors")
    assert paths.get_filename_list("loras") == ["sub/two.safetensors"]


def test_listing_generation_changes_only_when_listed_folders_change(workspace):
    lora_dir = workspace / "models" / "loras"
    touch(lora_dir / "sub" / "one.safetensors")
    paths.get_filename_list("loras")
    first = paths.listing_generation()
    assert paths.listing_generation() == first  # nothing changed: same number, nothing rescanned
    time.sleep(0.01)
    touch(lora_dir / "sub" / "two.safetensors")
    second = paths.listing_generation()
    assert second != first
    assert paths.get_filename_list("loras") == ["sub/one.safetensors", "sub/two.safetensors"]
    assert paths.listing_generation() == second
    touch(workspace / "input" / "photo.png")  # LoadImage lists the input folder itself
    assert paths.listing_generation() != second


def test_legacy_aliases_merge_both_directories(workspace):
    touch(workspace / "models" / "clip" / "old.safetensors")
    touch(workspace / "models" / "text_encoders" / "new.safetensors")
    touch(workspace / "models" / "unet" / "u.safetensors")
    assert paths.get_filename_list("text_encoders") == ["new.safetensors", "old.safetensors"]
    assert paths.get_filename_list("clip") == ["new.safetensors", "old.safetensors"]
    assert paths.get_filename_list("unet") == ["u.safetensors"]
    assert paths.get_filename_list("diffusion_models") == ["u.safetensors"]
    assert paths.get_folder_paths("clip") == paths.get_folder_paths("text_encoders")
    assert paths.get_full_path("clip", "old.safetensors") == str(workspace / "models" / "clip" / "old.safetensors")


def test_get_full_path(workspace):
    f = touch(workspace / "models" / "vae" / "sub" / "v.pt")
    assert paths.get_full_path("vae", "sub/v.pt") == str(f)
    assert paths.get_full_path("vae", "missing.pt") is None
    assert paths.get_full_path("no_such_folder", "v.pt") is None
    touch(workspace / "models" / "secret.pt")
    assert paths.get_full_path("vae", "../secret.pt") is None
    assert paths.get_full_path("vae", "/etc/passwd") is None
    assert paths.get_full_path_or_raise("vae", "sub/v.pt") == str(f)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        paths.get_full_path_or_raise("vae", "missing.pt")


def test_get_full_path_allows_symlinked_model_files(workspace, tmp_path):
    store = touch(tmp_path / "store" / "big.safetensors")
    link = workspace / "models" / "checkpoints" / "big.safetensors"
    link.symlink_to(store)
    assert paths.get_filename_list("checkpoints") == ["big.safetensors"]
    assert paths.get_full_path("checkpoints", "big.safetensors") == str(link)


def test_add_model_folder_path_order(workspace, tmp_path):
    extra = tmp_path / "extra_loras"
    touch(extra / "e.safetensors")
    paths.get_filename_list("loras")  # populate the cache first
    paths.add_model_folder_path("loras", str(extra))
    assert paths.get_folder_paths("loras")[-1] == str(extra)
    assert paths.get_filename_list("loras") == ["e.safetensors"]
    first = tmp_path / "first"
    paths.add_model_folder_path("loras", str(first), is_default=True)
    assert paths.get_folder_paths("loras")[0] == str(first)
    paths.add_model_folder_path("loras", str(extra), is_default=True)
    assert paths.get_folder_paths("loras")[0] == str(extra)
    assert paths.get_folder_paths("loras").count(str(extra)) == 1
    paths.add_model_folder_path("my_new_folder", str(tmp_path / "x"))
    assert paths.get_folder_paths("my_new_folder") == [str(tmp_path / "x")]
    with pytest.raises(KeyError):
        paths.get_folder_paths("definitely_unknown")


def test_supported_pt_extensions_is_shared_like_comfyui(workspace):
    touch(workspace / "models" / "unet" / "q.gguf")
    assert paths.get_filename_list("unet") == []
    paths.supported_pt_extensions.add(".gguf")
    try:
        assert paths.get_filename_list("unet") == ["q.gguf"]
    finally:
        paths.supported_pt_extensions.discard(".gguf")
    assert paths.folder_names_and_paths["configs"][1] == {".yaml"}


def test_filter_files_extensions():
    files = ["a.PNG", "b.jpg", "c.txt", "d"]
    assert paths.filter_files_extensions(files, {".png", ".jpg"}) == ["a.PNG", "b.jpg"]
    assert paths.filter_files_extensions(files, []) == sorted(files)


def test_folder_map_object_survives_configure(tmp_path):
    fnp = paths.folder_names_and_paths
    try:
        paths.configure(base_directory=tmp_path)
        assert paths.folder_names_and_paths is fnp
        assert fnp["checkpoints"][0] == [str(tmp_path / "models" / "checkpoints")]
    finally:
        paths.configure(base_directory=None)


# ---------------------------------------------------------------- extra model paths

def test_extra_model_paths_comfyui_form(workspace, tmp_path):
    other = tmp_path / "other_comfy"
    touch(other / "models" / "checkpoints" / "x.safetensors")
    touch(other / "models" / "loras" / "l1.safetensors")
    touch(other / "more_loras" / "l2.safetensors")
    touch(other / "custom_nodes" / "placeholder.txt")
    cfg = tmp_path / "cfg" / "extra_model_paths.yaml"
    cfg.parent.mkdir()
    cfg.write_text(textwrap.dedent("""
        comfyui:
            base_path: ../other_comfy
            is_default: true
            checkpoints: models/checkpoints/
            loras: |
                models/loras
                more_loras
            custom_nodes: custom_nodes
    """))
    paths.configure(base_directory=workspace, extra_model_paths_config=[cfg])
    assert paths.get_folder_paths("checkpoints")[0] == str(other / "models" / "checkpoints")
    assert paths.get_filename_list("checkpoints") == ["x.safetensors"]
    assert paths.get_filename_list("loras") == ["l1.safetensors", "l2.safetensors"]
    assert str(other / "custom_nodes") in paths.get_custom_nodes_directories()
    # the workspace's own folder is still searched
    assert str(workspace / "models" / "checkpoints") in paths.get_folder_paths("checkpoints")


def test_extra_model_paths_a1111_form(workspace, tmp_path):
    webui = tmp_path / "stable-diffusion-webui"
    touch(webui / "models" / "Stable-diffusion" / "sd15.ckpt")
    touch(webui / "models" / "VAE" / "vae.pt")
    touch(webui / "models" / "Lora" / "style.safetensors")
    touch(webui / "models" / "LyCORIS" / "lyco.safetensors")
    touch(webui / "embeddings" / "bad.pt")
    touch(webui / "models" / "ESRGAN" / "4x.pth")
    cfg = tmp_path / "extra.yaml"
    cfg.write_text(textwrap.dedent(f"""
        a111:
            base_path: {webui}
            checkpoints: models/Stable-diffusion
            configs: models/Stable-diffusion
            vae: models/VAE
            loras: |
                 models/Lora
                 models/LyCORIS
            upscale_models: |
                          models/ESRGAN
                          models/RealESRGAN
            embeddings: embeddings
            hypernetworks: models/hypernetworks
            controlnet: models/ControlNet
    """))
    paths.load_extra_path_config(cfg)
    assert paths.get_filename_list("checkpoints") == ["sd15.ckpt"]
    assert paths.get_filename_list("vae") == ["vae.pt"]
    assert paths.get_filename_list("loras") == ["lyco.safetensors", "style.safetensors"]
    assert paths.get_filename_list("embeddings") == ["bad.pt"]
    assert paths.get_filename_list("upscale_models") == ["4x.pth"]
    # not default: the workspace directory stays first
    assert paths.get_folder_paths("checkpoints")[0] == str(workspace / "models" / "checkpoints")
    assert paths.get_full_path("vae", "vae.pt") == str(webui / "models" / "VAE" / "vae.pt")


def test_extra_model_paths_bad_files(tmp_path, workspace):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        paths.load_extra_path_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a111: [1, 2\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        paths.load_extra_path_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        paths.load_extra_path_config(lst)


# ---------------------------------------------------------------- annotated paths

def test_annotated_filepaths(workspace):
    touch(workspace / "output" / "img.png")
    touch(workspace / "input" / "sub" / "in.png")
    assert paths.annotated_filepath("img.png [output]") == ("img.png", str(workspace / "output"))
    assert paths.annotated_filepath("img.png [temp]") == ("img.png", str(workspace / "temp"))
    assert paths.annotated_filepath("img.png") == ("img.png", None)
    assert paths.get_annotated_filepath("img.png [output]") == str(workspace / "output" / "img.png")
    assert paths.get_annotated_filepath("sub/in.png") == str(workspace / "input" / "sub" / "in.png")
    assert paths.get_annotated_filepath("x.png", default_dir=str(workspace / "temp")) == str(workspace / "temp" / "x.png")
    assert paths.exists_annotated_filepath("img.png [output]")
    assert paths.exists_annotated_filepath("sub/in.png")
    assert not paths.exists_annotated_filepath("img.png")  # default dir is input
    assert not paths.exists_annotated_filepath("../output/img.png")
    with pytest.raises(PathEscapeError):
        paths.get_annotated_filepath("../../etc/passwd [input]")


def test_input_subfolders(workspace):
    (workspace / "input" / "a" / "b").mkdir(parents=True)
    (workspace / "input" / "c").mkdir()
    assert paths.get_input_subfolders() == ["a", "a/b", "c"]


# ---------------------------------------------------------------- save paths

def test_save_image_path_counter(workspace):
    out = paths.get_output_directory()
    full, fname, counter, sub, prefix = paths.get_save_image_path("ComfyUI", out, 512, 512)
    assert (full, fname, counter, sub, prefix) == (out, "ComfyUI", 1, "", "ComfyUI")
    touch(pathlib.Path(out) / "ComfyUI_00001_.png")
    touch(pathlib.Path(out) / "ComfyUI_00007_.png")
    touch(pathlib.Path(out) / "ComfyUI_00003_.webp")
    touch(pathlib.Path(out) / "ComfyUIX_00050_.png")   # different prefix
    touch(pathlib.Path(out) / "ComfyUI_temp_00090_.png")  # different prefix
    assert paths.get_save_image_path("ComfyUI", out)[2] == 8


def test_save_image_path_subfolder_created(workspace):
    out = paths.get_output_directory()
    full, fname, counter, sub, _ = paths.get_save_image_path("runs/day1/img", out)
    assert full == os.path.join(out, "runs", "day1")
    assert os.path.isdir(full)
    assert (fname, counter, sub) == ("img", 1, os.path.join("runs", "day1"))
    touch(pathlib.Path(full) / "img_00041_.png")
    assert paths.get_save_image_path("runs/day1/img", out)[2] == 42
    assert paths.get_save_image_path("img", out)[2] == 1


def test_save_image_path_tokens(workspace):
    out = paths.get_output_directory()
    _, fname, _, sub, prefix = paths.get_save_image_path("%year%/img_%width%x%height%", out, 640, 480)
    year = str(time.localtime().tm_year)
    assert sub == year
    assert fname == "img_640x480"
    assert prefix == f"{year}/img_640x480"
    _, fname, *_ = paths.get_save_image_path("%month%-%day%_%hour%%minute%%second%", out)
    assert len(fname) == len("01-01_000000")


@pytest.mark.parametrize("prefix", ["../escape", "a/../../escape", "/tmp/abs", "..\\..\\escape"])
def test_save_image_path_refuses_escape(workspace, prefix):
    with pytest.raises(PathEscapeError):
        paths.get_save_image_path(prefix, paths.get_output_directory())
    assert not (workspace / "escape").exists()


# ---------------------------------------------------------------- safe_join

@pytest.mark.parametrize("bad", [
    "..", "../x", "a/../../x", "a/b/../../../x", "/etc/passwd", "//etc/passwd", "C:\\Windows", "C:/Windows",
    "c:x", "\\\\server\\share", "..\\x", "a\\..\\..\\x", "a\x00b", "x/\x00", "./../x",
])
def test_safe_join_rejects(tmp_path, bad):
    (tmp_path / "root").mkdir()
    with pytest.raises(PathEscapeError):
        safe_join(tmp_path / "root", bad)
    with pytest.raises(ValueError):  # PathEscapeError is a ValueError for callers that catch that
        safe_join(tmp_path / "root", "ok", bad)


def test_safe_join_accepts_normal_paths(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    assert safe_join(root, "a/b/c.png") == (root / "a" / "b" / "c.png").resolve()
    assert safe_join(root, "a", "b", "c.png") == (root / "a" / "b" / "c.png").resolve()
    assert safe_join(root, "./a//b/") == (root / "a" / "b").resolve()
    assert safe_join(root, "") == root.resolve()
    assert safe_join(root, "a..b") == (root / "a..b").resolve()
    assert safe_join(str(root), pathlib.PurePosixPath("a/x")) == (root / "a" / "x").resolve()


def test_safe_join_symlinks(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "inner").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    (root / "inner" / "ok.txt").write_text("ok")
    (root / "link_out").symlink_to(outside)                          # dir symlink escaping
    (root / "file_out").symlink_to(outside / "secret.txt")           # file symlink escaping
    (root / "link_in").symlink_to(root / "inner")                    # stays inside
    (root / "dangling").symlink_to(tmp_path / "does_not_exist")      # dangling, points outside
    (root / "inner" / "rel_out").symlink_to("../../outside")         # relative escape
    for bad in ("link_out", "link_out/secret.txt", "file_out", "dangling", "inner/rel_out/secret.txt"):
        with pytest.raises(PathEscapeError):
            safe_join(root, bad)
    assert safe_join(root, "link_in/ok.txt").read_text() == "ok"


def test_safe_join_root_itself_a_symlink(tmp_path):
    real = tmp_path / "real"
    (real / "d").mkdir(parents=True)
    root = tmp_path / "rootlink"
    root.symlink_to(real)
    assert safe_join(root, "d") == (real / "d")


def test_safe_join_rejects_non_strings(tmp_path):
    with pytest.raises(PathEscapeError):
        safe_join(tmp_path, 5)


def test_user_directories(workspace):
    assert paths.get_system_user_directory() == str(workspace / "user" / "__system")
    assert paths.get_public_user_directory("default") == str(workspace / "user" / "default")
    assert paths.get_public_user_directory("__system") is None
    assert paths.get_public_user_directory("../x") is None
    assert paths.get_public_user_directory("") is None
    with pytest.raises(ValueError):
        paths.get_system_user_directory("../x")
