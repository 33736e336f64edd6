"""Strict configurations: dataclasses filled from YAML/dicts, unknown keys and wrong types refused.

Every model and the training engine describe their settings as (nested) ``@dataclass`` types whose defaults
are the papers' values. :func:`from_dict` fills one from a plain dict (a YAML file, a preset, ``--set``
overrides) and refuses, with one line naming the file and the key, anything the dataclass does not declare —
the behaviour of a JSON schema with ``additionalProperties: false``.

Resolution order used by ``hambench train``: dataclass defaults ← YAML top level ← preset ← ``--config FILE``
← ``--set key=value``; :func:`merge` is the deep merge used at each step.

>>> from dataclasses import dataclass
>>> @dataclass
... class Opt:
...     lr: float = 2e-3
...     name: str = "adam"
>>> from_dict(Opt, {"lr": "1e-3"}, "demo.yaml").lr
0.001
>>> from_dict(Opt, {"lrr": 1}, "demo.yaml")
Traceback (most recent call last):
hambench.errors.InputError: demo.yaml: unknown key 'lrr' (known: lr, name)
>>> parse_set(["opt.lr=5e-4", "layers=2"])
{'opt': {'lr': 0.0005}, 'layers': 2}
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from hambench.errors import InputError

__all__ = ["from_dict", "to_dict", "BoundedLoader", "load_yaml", "load_model_yaml", "merge", "parse_set", "resolve"]


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp, value, key: str, where):
    """Check (and gently coerce: int → float, list → tuple) ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key, where)
            except InputError as e:
                errors.append(e)
        raise InputError(where, f"'{key}' = {value!r} is not {' or '.join(_type_name(a) for a in args)}")
    if origin is Literal:
        if value not in args:
            raise InputError(where, f"'{key}' = {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(where, f"'{key}' must be a mapping of {_type_name(tp)} fields, got {value!r}")
        return from_dict(tp, value, where, prefix=f"{key}.")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise InputError(where, f"'{key}' must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise InputError(where, f"'{key}' must have {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{key}[{i}]", where) for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise InputError(where, f"'{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(where, f"'{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(where, f"'{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 2e-3 without a dot as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(where, f"'{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise InputError(where, f"'{key}' must be a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise InputError(where, f"'{key}' must be {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls, data: dict | None, where, prefix: str = ""):
    """Build the dataclass ``cls`` from ``data``; missing keys keep their defaults, unknown keys are refused.

    ``where`` names the source (a file path or "--set") in error messages.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InputError(where, f"'{prefix.rstrip('.') or 'config'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise InputError(where, f"unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}", where)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(where, f"{prefix.rstrip('.') or 'config'}: {e}") from None
    return obj


def to_dict(obj) -> dict:
    """A dataclass (nested) as plain dicts/lists, JSON/YAML-able."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(obj)


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's ``SafeLoader`` with bounds, so that a small file cannot make a large or endless object.

    An alias (``*name``) makes its anchor's node appear again without copying it, so ten lines of nested aliases
    (the "billion laughs") expand to 10⁹ values for whatever walks the result (a schema check, ``json.dumps``,
    a deep copy). This loader counts the nodes of the document *as expanded* and refuses more than
    :attr:`max_nodes`, refuses nesting deeper than :attr:`max_depth` (composing is recursive) and recursive
    aliases (a node inside itself); a subclass with ``allow_aliases = False`` refuses every alias. Each refusal is
    a ``yaml.YAMLError`` with the line, as a syntax error is.
    """

    max_depth = 64
    max_nodes = 100_000
    allow_aliases = True

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent) and not self.allow_aliases:
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"found the alias *{event.anchor}: YAML aliases are "
                                              "not accepted in this file", event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > self.max_depth:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {self.max_depth} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_expanded_size(node, self.max_nodes)
        return node


def _check_expanded_size(root, limit: int) -> None:
    """Refuse a composed document whose expansion (every alias replaced by a copy of its node) holds more than
    ``limit`` nodes, or that contains itself. Iterative, memoised per node: linear in the nodes as written."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in size:
            continue
        if isinstance(node, yaml.ScalarNode):
            size[key] = 1
            continue
        kids = ([k for pair in node.value for k in pair] if isinstance(node, yaml.MappingNode) else list(node.value))
        if children_done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            if size[key] > limit:
                raise yaml.composer.ComposerError(None, None, f"expands to more than {limit:,} values (YAML aliases "
                                                  "repeated inside each other)", node.start_mark)
            continue
        if key in open_:
            raise yaml.composer.ComposerError(None, None, "a YAML alias refers to a node that contains it",
                                              node.start_mark)
        open_.add(key)
        stack.append((node, True))
        for k in kids:
            if id(k) in open_:
                raise yaml.composer.ComposerError(None, None, "a YAML alias refers to a node that contains it",
                                                  k.start_mark)
            if id(k) not in size:
                stack.append((k, False))


def load_yaml(path) -> dict:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping top level is one :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file not found")
    try:
        data = yaml.load(path.read_text(), Loader=BoundedLoader)  # noqa: S506 — a SafeLoader subclass
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise InputError(path, f"not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, f"the top level must be a mapping, got {type(data).__name__}")
    return data


def merge(base: dict, override: dict | None) -> dict:
    """Deep merge: mappings merge key by key, anything else in ``override`` replaces ``base``."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_set(items) -> dict:
    """``["a.b=1", "c=[1, 2]"]`` → ``{"a": {"b": 1}, "c": [1, 2]}`` (values parsed as YAML scalars/lists)."""
    out: dict = {}
    for item in items or ():
        if "=" not in item:
            raise InputError("--set", f"'{item}' is not KEY=VALUE")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            raise InputError("--set", f"'{item}' has an empty key")
        try:
            value = yaml.load(raw, Loader=BoundedLoader) if raw.strip() else ""  # noqa: S506
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):
            try:  # YAML 1.1 reads "5e-4" as a string; numbers are what users mean
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                pass
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InputError("--set", f"'{key}' sets inside a non-mapping value")
        node[parts[-1]] = value
    return out


def load_model_yaml(config_file, _seen=()) -> dict:
    """A model's YAML with its ``inherits: OTHER.yaml`` chain applied (a variant's file names its backbone's and
    holds only what it changes): the parent's top level and each of its presets are deep-merged under this
    file's, so a variant can never drift from the recipe it extends."""
    path = Path(config_file)
    d = load_yaml(path)
    parent = d.pop("inherits", None)
    if parent is None:
        return d
    if not isinstance(parent, str):
        raise InputError(path, f"'inherits' must name a YAML file, got {parent!r}")
    ppath = (path.parent / parent).resolve()
    if ppath in _seen or ppath == path.resolve():
        raise InputError(path, f"'inherits' loops back to {ppath.name}")
    base = load_model_yaml(ppath, (*_seen, path.resolve()))
    presets = merge(base.pop("presets", {}) or {}, {})
    for name, over in (d.pop("presets", {}) or {}).items():
        presets[name] = merge(presets.get(name) or {}, over or {})
    out = merge(base, d)
    out["presets"] = presets
    return out


def resolve(config_file, preset: str | None = None, user_file=None, sets=None) -> dict:
    """The merged config dict of a model: its YAML (top level minus ``presets``, ``inherits`` applied, see
    :func:`load_model_yaml`) ← ``presets[preset]`` ← ``user_file`` ← ``sets`` (``--set`` items). Unknown preset
    names are refused with the known ones."""
    base = load_model_yaml(config_file)
    presets = base.pop("presets", {}) or {}
    if preset is not None:
        if preset not in presets:
            raise InputError(f"--preset {preset}", f"unknown preset '{preset}' (known: "
                                                   f"{', '.join(sorted(presets)) or 'none'}) in {config_file}")
        base = merge(base, presets[preset] or {})
    if user_file is not None:
        user = load_yaml(user_file)
        user.pop("presets", None)
        base = merge(base, user)
    return merge(base, parse_set(sets))
