import sys

import pytest

from comfyui.nodes.custom_nodes import load_custom_nodes

CLASSIC_NODE = '''
class {cls}:
    CATEGORY = "test"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"a": ("INT", {{"default": 1}})}}}}

    def run(self, a):
        return (a + {inc},)
'''


def by_name(results):
    return {r.name: r for r in results}


def run_node(registry, name, **kwargs):
    cls = registry.get(name).cls
    obj = cls()
    return getattr(obj, cls.FUNCTION)(**kwargs)


def test_package_with_web_directory_relative_imports_and_compat_modules(tmp_path, registry, write_pack, workspace):
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "PackA", {
        "__init__.py": '''
            import folder_paths
            import comfy.utils
            import comfy.model_management
            from server import PromptServer
            import nodes
            from .impl import AddOne
            MODELS = folder_paths.models_dir
            NODE_CLASS_MAPPINGS = {"PackA_AddOne": AddOne}
            NODE_DISPLAY_NAME_MAPPINGS = {"PackA_AddOne": "Add One (A)"}
            WEB_DIRECTORY = "./js"
        ''',
        "impl.py": CLASSIC_NODE.format(cls="AddOne", inc=1),
        "js/ext.js": "console.log('hi')\n",
    })
    results = load_custom_nodes(registry, [cn], entry_points=False)
    r = by_name(results)["PackA"]
    assert r.ok, r.error
    assert r.nodes == ["PackA_AddOne"]
    assert r.source == "directory"
    node = registry.get("PackA_AddOne")
    assert node.display_name == "Add One (A)"
    assert node.python_module == "custom_nodes.PackA"
    assert registry.object_info()["PackA_AddOne"]["python_module"] == "custom_nodes.PackA"
    assert registry.web_directories["PackA"] == str(cn / "PackA" / "js")
    assert r.web_directory == str(cn / "PackA" / "js")
    assert run_node(registry, "PackA_AddOne", a=41) == (42,)
    assert sys.modules[r.module_name].MODELS == str(workspace / "models")
    assert str(cn / "PackA") not in sys.path  # like ComfyUI, a pack's folder is not put on sys.path


def test_single_file_pack_and_skipped_entries(tmp_path, registry, write_pack):
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "single.py", CLASSIC_NODE.format(cls="Single", inc=2) + 'NODE_CLASS_MAPPINGS = {"Single": Single}\n')
    write_pack(cn, "off.py.disabled", "raise RuntimeError('must not be imported')\n")
    write_pack(cn, "OffPack.disabled", {"__init__.py": "raise RuntimeError('must not be imported')\n"})
    write_pack(cn, ".hidden", {"__init__.py": "raise RuntimeError('must not be imported')\n"})
    write_pack(cn, "__pycache__", {"x.py": "raise RuntimeError\n"})
    write_pack(cn, "not_a_pack", {"readme.txt": "hi"})
    write_pack(cn, "notes.txt", "not python")
    write_pack(cn, "__init__.py", "raise RuntimeError('must not be imported')\n")
    results = by_name(load_custom_nodes(registry, [cn], entry_points=False))
    assert results["single"].ok and results["single"].source == "file"
    assert registry.get("Single").python_module == "custom_nodes.single"
    assert run_node(registry, "Single", a=1) == (3,)
    assert results["OffPack.disabled"].skipped and results["off.py.disabled"].skipped
    assert "no __init__.py" in results["not_a_pack"].skipped
    assert not ({".hidden", "__pycache__", "notes", "notes.txt", "__init__"} & set(results))
    assert set(registry.names()) == {"Single"}


def test_broken_pack_is_isolated(tmp_path, registry, write_pack, caplog):
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "AAA_broken", {"__init__.py": "import os\nraise RuntimeError('kaboom in AAA')\n"})
    write_pack(cn, "BBB_missing_dep", {"__init__.py": "import definitely_not_a_module_xyz\n"})
    write_pack(cn, "CCC_exits", {"__init__.py": "import sys\nsys.exit(3)\n"})
    write_pack(cn, "DDD_good", {"__init__.py": CLASSIC_NODE.format(cls="Good", inc=0)
                                + 'NODE_CLASS_MAPPINGS = {"Good": Good}\n'})
    write_pack(cn, "EEE_bad_node", {"__init__.py": CLASSIC_NODE.format(cls="Fine", inc=0) + '''
class NoInputs:
    RETURN_TYPES = ()
    FUNCTION = "run"
NODE_CLASS_MAPPINGS = {"NoInputs": NoInputs, "Fine": Fine}
'''})
    with caplog.at_level("ERROR"):
        results = by_name(load_custom_nodes(registry, [cn], entry_points=False))
    assert "RuntimeError: kaboom in AAA" in results["AAA_broken"].error
    assert "Traceback" in results["AAA_broken"].error
    assert "definitely_not_a_module_xyz" in results["BBB_missing_dep"].error
    assert "SystemExit" in results["CCC_exits"].error
    assert results["DDD_good"].ok and "Good" in registry
    # one bad node class does not stop the pack's other nodes
    assert results["EEE_bad_node"].nodes == ["Fine"] and "NoInputs" in results["EEE_bad_node"].error
    assert "Fine" in registry and "NoInputs" not in registry
    assert "AAA_broken" in caplog.text and "kaboom in AAA" in caplog.text
    assert "custom_nodes.AAA_broken" not in sys.modules


def test_same_pack_name_in_two_directories_does_not_clash(tmp_path, registry, write_pack):
    d1, d2 = tmp_path / "cn1", tmp_path / "cn2"
    for d, inc, name in ((d1, 10, "FromOne"), (d2, 20, "FromTwo")):
        write_pack(d, "Same", {
            "__init__.py": f'from .impl import N\nNODE_CLASS_MAPPINGS = {{"{name}": N}}\n',
            "impl.py": CLASSIC_NODE.format(cls="N", inc=inc),
        })
    results = load_custom_nodes(registry, [d1, d2], entry_points=False)
    assert all(r.ok for r in results), [r.error for r in results]
    assert results[0].module_name != results[1].module_name
    assert run_node(registry, "FromOne", a=0) == (10,)
    assert run_node(registry, "FromTwo", a=0) == (20,)


def test_builtin_nodes_cannot_be_replaced(tmp_path, registry, write_pack):
    builtin = type("Builtin", (), {"CATEGORY": "x", "RETURN_TYPES": ("INT",), "FUNCTION": "f",
                                   "INPUT_TYPES": classmethod(lambda c: {"required": {}}),
                                   "f": lambda self: (1,)})
    registry.register_mappings({"KSampler": builtin})
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "Hijack", {"__init__.py": CLASSIC_NODE.format(cls="Evil", inc=0)
                              + 'NODE_CLASS_MAPPINGS = {"KSampler": Evil, "EvilOwn": Evil}\n'})
    r = load_custom_nodes(registry, [cn], entry_points=False)[0]
    assert r.nodes == ["EvilOwn"]
    assert registry.get("KSampler").cls is builtin


def test_disable_all_whitelist_blacklist(tmp_path, registry, write_pack):
    cn = tmp_path / "custom_nodes"
    for name in ("alpha", "beta", "gamma_tools"):
        write_pack(cn, name, {"__init__.py": CLASSIC_NODE.format(cls="N", inc=0)
                              + f'NODE_CLASS_MAPPINGS = {{"{name}_node": N}}\n'})
    write_pack(cn, "delta.py", CLASSIC_NODE.format(cls="N", inc=0) + 'NODE_CLASS_MAPPINGS = {"delta_node": N}\n')

    res = by_name(load_custom_nodes(registry, [cn], disable_all=True, entry_points=False))
    assert all(r.skipped == "all custom nodes disabled" for r in res.values())
    assert list(registry.names()) == []

    res = by_name(load_custom_nodes(registry, [cn], disable_all=True, whitelist=["beta", "delta.py"],
                                    entry_points=False))
    assert sorted(registry.names()) == ["beta_node", "delta_node"]
    assert res["alpha"].skipped and res["beta"].ok

    from comfyui.nodes.registry import NodeRegistry
    reg2 = NodeRegistry()
    res = by_name(load_custom_nodes(reg2, [cn], blacklist=["gamma_*", "delta"], entry_points=False))
    assert sorted(reg2.names()) == ["alpha_node", "beta_node"]
    assert res["gamma_tools"].skipped == "blacklisted" and res["delta"].skipped == "blacklisted"

    reg3 = NodeRegistry()  # blacklist beats whitelist
    load_custom_nodes(reg3, [cn], disable_all=True, whitelist=["alpha", "beta"], blacklist=["beta"],
                      entry_points=False)
    assert sorted(reg3.names()) == ["alpha_node"]


def test_default_directories_come_from_paths(workspace, registry, write_pack):
    write_pack(workspace / "custom_nodes", "InWorkspace", {
        "__init__.py": CLASSIC_NODE.format(cls="W", inc=5) + 'NODE_CLASS_MAPPINGS = {"WorkspaceNode": W}\n'})
    results = load_custom_nodes(registry, entry_points=False)
    assert by_name(results)["InWorkspace"].ok
    assert "WorkspaceNode" in registry


def test_entry_point_module_with_mappings(site_dir, registry, install_dist):
    install_dist(site_dir, "ep-pack-classic", {"ep_classic": "ep_pack_classic"}, {
        "ep_pack_classic/__init__.py": CLASSIC_NODE.format(cls="EP", inc=100)
        + 'NODE_CLASS_MAPPINGS = {"EntryPointNode": EP}\nNODE_DISPLAY_NAME_MAPPINGS = {"EntryPointNode": "EP!"}\n'
          'WEB_DIRECTORY = "web"\n',
        "ep_pack_classic/web/x.js": "",
    })
    results = by_name(load_custom_nodes(registry, [], entry_points=True))
    r = results["ep_classic"]
    assert r.ok, r.error
    assert r.source == "entry_point"
    assert registry.get("EntryPointNode").display_name == "EP!"
    assert registry.get("EntryPointNode").python_module == "custom_nodes.ep_classic"
    assert registry.web_directories["ep_classic"] == str(site_dir / "ep_pack_classic" / "web")
    assert run_node(registry, "EntryPointNode", a=1) == (101,)
    # entry points obey the blacklist too
    from comfyui.nodes.registry import NodeRegistry
    reg2 = NodeRegistry()
    results = by_name(load_custom_nodes(reg2, [], blacklist=["ep_*"]))
    assert results["ep_classic"].skipped == "blacklisted" and "EntryPointNode" not in reg2
    assert "ep_classic" not in by_name(load_custom_nodes(NodeRegistry(), [], entry_points=False))


SCHEMA_PACK = '''
from comfy_api.latest import ComfyExtension, io


class Triple(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="{node_id}", category="test",
                         inputs=[io.Int.Input("x", default=1)], outputs=[io.Int.Output()])

    @classmethod
    def execute(cls, x):
        return io.NodeOutput(x * 3)


class Ext(ComfyExtension):
    loaded = False

    async def on_load(self):
        Ext.loaded = True

    async def get_node_list(self):
        return [Triple]


{entry}
'''


def test_entry_point_schema_extension(site_dir, registry, install_dist):
    install_dist(site_dir, "ep-pack-schema", {
        "ep_schema_mod": "ep_pack_schema_mod",
        "ep_schema_func": "ep_pack_schema_func:make_extension",
        "ep_broken": "ep_pack_broken",
    }, {
        "ep_pack_schema_mod.py": SCHEMA_PACK.format(node_id="TripleAsync",
                                                    entry="async def comfy_entrypoint():\n    return Ext()\n"),
        "ep_pack_schema_func.py": SCHEMA_PACK.format(node_id="TripleSync",
                                                     entry="def make_extension():\n    return Ext()\n"),
        "ep_pack_broken.py": "raise ImportError('broken entry point module')\n",
    })
    results = by_name(load_custom_nodes(registry, [], entry_points=True))
    assert results["ep_schema_mod"].ok, results["ep_schema_mod"].error
    assert results["ep_schema_func"].ok, results["ep_schema_func"].error
    assert results["ep_schema_mod"].nodes == ["TripleAsync"]
    assert results["ep_schema_func"].nodes == ["TripleSync"]
    assert "broken entry point module" in results["ep_broken"].error
    assert registry.get("TripleAsync").python_module == "custom_nodes.ep_schema_mod"
    assert sys.modules["ep_pack_schema_mod"].Ext.loaded
    info = registry.object_info()["TripleAsync"]
    assert info["output"] == ["INT"]


def test_directory_schema_pack(tmp_path, registry, write_pack):
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "SchemaPack", {"__init__.py": SCHEMA_PACK.format(
        node_id="TripleDir", entry="async def comfy_entrypoint():\n    return Ext()\n")})
    r = load_custom_nodes(registry, [cn], entry_points=False)[0]
    assert r.ok, r.error
    assert registry.get("TripleDir").python_module == "custom_nodes.SchemaPack"


async def test_loading_inside_a_running_event_loop(tmp_path, registry, write_pack):
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "SchemaPack2", {"__init__.py": SCHEMA_PACK.format(
        node_id="TripleLoop", entry="async def comfy_entrypoint():\n    return Ext()\n")})
    r = load_custom_nodes(registry, [cn], entry_points=False)[0]
    assert r.ok, r.error
    assert "TripleLoop" in registry


def test_entrypoint_returning_wrong_type_is_an_error(tmp_path, registry, write_pack):
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "WrongType", {"__init__.py": "def comfy_entrypoint():\n    return 42\n"})
    r = load_custom_nodes(registry, [cn], entry_points=False)[0]
    assert "ComfyExtension" in r.error
