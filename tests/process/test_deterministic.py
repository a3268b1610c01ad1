"""``--deterministic``: the ``comfyui`` command's process runs torch's deterministic algorithms
(warning where an operation has none), as ComfyUI's does; without it torch's defaults stay."""
import subprocess
import sys

CHECK = ("import sys; from comfyui.process import configure_process; "
         "configure_process(deterministic=sys.argv[1] == '1'); import torch, os; "
         "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), "
         "os.environ.get('CUBLAS_WORKSPACE_CONFIG'))")


def run(flag: str) -> str:
    r = subprocess.run([sys.executable, "-c", CHECK, flag], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_deterministic_flag_turns_on_deterministic_algorithms():
    assert run("1") == "True True :4096:8"
    assert run("0") == "False False None"


def test_the_command_passes_the_flag_on():
    from comfyui.config import load_config

    assert load_config(["--deterministic"], env={}, discover_config_file=False).deterministic is True
