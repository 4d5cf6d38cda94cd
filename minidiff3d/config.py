"""Typed dataclass configs: to JSON and back, and overrides by dotted key, checked against the annotations.

Every part of a text-to-3D system has a dataclass config (``scene.DensityFieldConfig``,
``guidance.SDSConfig``, ...), and a run's config nests them (``systems.RunConfig``). These three
functions are all it takes to store a run in ``run.json``, reload it, and change one knob from a
command line (``--set guidance.guidance_scale=15``):

    to_dict(config)                       -> plain, JSON-ready dict
    override(config, {"a.b": 1, ...})     -> a new config (nested dicts work too)
    parse_assignment("a.b=15")            -> ("a.b", 15), the value read as JSON when it parses

A wrong key or a value of the wrong type raises a ``ValueError`` naming the key, what was
expected and what came; each config's own ``__post_init__`` then checks ranges, as it does when
built by hand.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing


def to_dict(config) -> dict:
    """The config as nested plain dicts, lists and numbers (JSON-ready)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if origin is dict:
        return f"an object of {_describe(args[1])} values"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _coerce(name: str, value, hint):
    """``value`` as the annotated type ``hint``, or a ValueError naming ``name``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    fail = ValueError(f"{name}: expected {_describe(hint)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(name, value, option)
            except ValueError:
                pass
        raise fail
    if origin is typing.Literal:
        if value not in args:
            raise fail
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[float, ...]: any length
        if not isinstance(value, (list, tuple)):
            raise fail
        return tuple(_coerce(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise fail
        return tuple(_coerce(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise fail
        return {k: _coerce(f"{name}.{k}", v, args[1]) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise fail
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise fail
        return value
    raise TypeError(f"{name}: the config annotation {hint!r} is not one that configs support")


def _nest(overrides: dict) -> dict:
    """``{"a.b": 1, "a": {"c": 2}}`` -> ``{"a": {"b": 1, "c": 2}}``."""
    nested: dict = {}
    for key, value in overrides.items():
        *parents, last = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key}: {part!r} is both a value and a group of keys")
        if isinstance(value, dict):
            node.setdefault(last, {}).update(_nest(value))
        else:
            node[last] = value
    return nested


def override(config, overrides: dict, prefix: str = ""):
    """A copy of ``config`` with ``overrides`` (dotted keys or nested dicts) applied and checked."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config: expected a dataclass instance, got {type(config).__name__}")
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for key, value in _nest(overrides).items():
        name = prefix + key
        if key not in names:
            raise ValueError(f"{name}: unknown key; expected one of {', '.join(prefix + n for n in names)}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):  # the value's own class, which may be a subclass of the annotation's
            if not isinstance(value, dict):
                raise ValueError(f"{name}: expected a group of keys ({', '.join(f.name for f in dataclasses.fields(current))}), "
                                 f"got {value!r}")
            changes[key] = override(current, value, name + ".")
        else:
            changes[key] = _coerce(name, value, hints[key])
    return dataclasses.replace(config, **changes)


def parse_assignment(text: str) -> tuple[str, object]:
    """``"guidance.guidance_scale=15"`` -> ``("guidance.guidance_scale", 15)``; a value that is not JSON stays a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set: expected KEY=VALUE (e.g. guidance.guidance_scale=15), got {text!r}")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw
