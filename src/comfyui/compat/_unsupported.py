"""Names of upstream ComfyUI that this implementation does not provide.

A custom node pack often imports many names at module level and uses a few of them in a few
nodes. Importing such a name works, so the pack's other nodes load; using it raises
:class:`NotSupportedError` saying what is missing. Nothing here returns a made-up result.
"""
from __future__ import annotations

from typing import Any, NoReturn


class NotSupportedError(NotImplementedError):
    """An upstream ComfyUI capability that comfyui does not implement."""


def _fail(qualname: str, why: str) -> NoReturn:
    raise NotSupportedError(f"{qualname} is not supported by comfyui{': ' + why if why else ''}")


def function(qualname: str, why: str = "") -> Any:
    """A function that raises NotSupportedError when called."""

    def unsupported(*args: Any, **kwargs: Any) -> NoReturn:
        _fail(qualname, why)

    unsupported.__name__ = unsupported.__qualname__ = qualname.rpartition(".")[2]
    unsupported.__doc__ = f"Not supported by comfyui: upstream's {qualname}. {why}".strip()
    return unsupported


def cls(qualname: str, why: str = "") -> type:
    """A class that can be imported, subclassed and named in annotations, and raises
    NotSupportedError when instantiated (by itself or through a subclass)."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        _fail(qualname, why)

    name = qualname.rpartition(".")[2]
    return type(name, (), {"__init__": __init__, "__module__": qualname.rpartition(".")[0],
                           "__doc__": f"Not supported by comfyui: upstream's {qualname}. {why}".strip()})


def module_getattr(module: str, names: dict[str, str] | set[str], why: str = "") -> Any:
    """A module ``__getattr__`` giving an unsupported function or class (capitalised names) for
    each upstream name in ``names`` (a dict maps a name to its own reason)."""
    reasons = names if isinstance(names, dict) else dict.fromkeys(names, why)
    made: dict[str, Any] = {}  # one object per name, so two imports of it agree

    def __getattr__(name: str) -> Any:
        if name in reasons:
            if name not in made:
                qualname, reason = f"{module}.{name}", reasons[name] or why
                made[name] = cls(qualname, reason) if name[:1].isupper() else function(qualname, reason)
            return made[name]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
