"""The leaderboard's two file schemas: a submission's ``meta.yml`` and a board's ``datasets.yml``.

Both are JSON Schemas (draft 2020-12) with ``additionalProperties: false`` at every level, checked with
``jsonschema``; the meta schema lives in ``meta.schema.json`` next to this module. YAML is read with a loader
that refuses duplicate keys, aliases (``*name``: a few lines of nested aliases would expand to 10⁹ values),
nesting deeper than 64 levels and files over :data:`MAX_YAML_BYTES`, and keeps dates as strings; every number
must be finite. A failure is one
:class:`~hambench.errors.InputError` naming the file, the field and the problem.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from hambench.config import BoundedLoader
from hambench.errors import InputError

__all__ = ["META_SCHEMA_PATH", "meta_schema", "DATASETS_SCHEMA", "validate_meta", "validate_datasets",
           "load_yaml_strict", "dump_yaml", "check_schema", "NAME_PATTERN", "MAX_YAML_BYTES"]

META_SCHEMA_PATH = Path(__file__).with_name("meta.schema.json")

#: the largest meta.yml / datasets.yml read (a meta.yml is ~1 kB; a board of 100 datasets ~50 kB)
MAX_YAML_BYTES = 1 << 20

#: a board folder name (model or dataset key): no '/', no leading '.', no '..'
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"

DATASETS_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "hambench leaderboard board datasets (datasets.yml)",
    "type": "object",
    "additionalProperties": False,
    "required": ["datasets_version", "datasets"],
    "properties": {
        "datasets_version": {"const": 1},
        "title": {"type": "string", "maxLength": 200},
        "datasets": {
            "type": "object",
            "propertyNames": {"pattern": NAME_PATTERN, "not": {"pattern": r"\.\."}},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind", "truth_checksum"],
                "properties": {
                    "title": {"type": "string", "maxLength": 200},
                    "description": {"type": "string", "maxLength": 4000},
                    "kind": {"enum": ["molecule", "crystal"]},
                    "truth_checksum": {"type": "string", "pattern": "^(sha256:)?[0-9a-f]{64}$"},
                    "split": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+$"},
                    "store": {"type": "string", "minLength": 1, "maxLength": 1000},
                    "primary": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                    "score": {
                        "description": "options of `hambench score` every submission is scored with",
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "scf": {"type": "integer", "minimum": 1},
                            "seed": {"type": "integer", "minimum": 0},
                            "bands": {"type": "boolean"},
                            "kpath": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
    },
}


class _StrictLoader(BoundedLoader):
    """The bounded SafeLoader without aliases, refusing duplicate mapping keys, reading dates as plain strings."""

    allow_aliases = False


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value, not a list or "
                                                    "mapping", key_node.start_mark)
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def load_yaml_strict(path) -> dict:
    """Read a YAML mapping (duplicate keys refused, dates kept as strings) or raise :class:`InputError`."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
            raise InputError(path, f"{path.stat().st_size:,} bytes, more than the {MAX_YAML_BYTES:,} a board file "
                                   "may have")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read ({type(e).__name__}: {e})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 — a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(path, f"not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise InputError(path, f"expected a YAML mapping at the top level, found {type(data).__name__}")
    return data


class _NoAliasDumper(yaml.SafeDumper):
    """SafeDumper that writes an object met twice as two copies: board files are read without aliases."""

    def ignore_aliases(self, data):
        return True


def dump_yaml(obj, **kw) -> str:
    """``obj`` as YAML a board reader accepts (no anchors or aliases; keys in their order; unicode kept)."""
    return yaml.dump(obj, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, **kw)


@lru_cache(maxsize=1)
def meta_schema() -> dict:
    """The ``meta.yml`` JSON Schema (parsed ``meta.schema.json``)."""
    return json.loads(META_SCHEMA_PATH.read_text(encoding="utf-8"))


def _non_finite(obj, where="") -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "(top level)"
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad = _non_finite(v, f"{where}.{k}" if where else str(k))
            if bad:
                return bad
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            bad = _non_finite(v, f"{where}[{i}]")
            if bad:
                return bad
    return None


def check_schema(data: dict, schema: dict, where) -> None:
    """Check ``data`` against the JSON Schema ``schema`` (and finite numbers): one :class:`InputError` line."""
    bad = _non_finite(data)
    if bad:
        raise InputError(where, f"{bad}: not a finite number")
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(data))
    if not errors:
        return
    err = jsonschema.exceptions.best_match(errors)
    field = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known)) if isinstance(err.instance, dict) else []
        problem = f"unknown key {extra[0]!r}" + (f" (known: {', '.join(known)})" if known else "")
    elif err.validator == "required":
        problem = err.message.replace("is a required property", "is missing")
    elif err.validator in ("pattern", "not") and err.schema.get("pattern") == NAME_PATTERN:
        problem = f"{err.instance!r} is not a valid name (letters, digits, '._+-'; no '/', no leading '.', no '..')"
    else:
        problem = err.message
        if len(problem) > 200:
            problem = problem[:200] + "…"
    raise InputError(where, f"{field}: {problem}")


def validate_meta(data: dict, where="meta.yml") -> dict:
    """Check a parsed ``meta.yml`` against the schema; return it unchanged or raise :class:`InputError`.

    Example
    -------
    >>> validate_meta({"meta_version": 1}, "m.yml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    hambench.errors.InputError: m.yml: (top level): 'model' is missing
    """
    left = _placeholders(data)
    if left:
        raise InputError(where, f"{left[0]}: fill in the template's placeholder {_at(data, left[0])!r}")
    check_schema(data, meta_schema(), where)
    return data


def _placeholders(data, path: str = "") -> list[str]:
    """Fields still holding a ``<…>`` placeholder of the ``leaderboard init`` template (dotted paths)."""
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _placeholders(v, f"{path}.{k}" if path else str(k))]
    if isinstance(data, list):
        return [p for k, v in enumerate(data) for p in _placeholders(v, f"{path}[{k}]")]
    return [path] if isinstance(data, str) and data.startswith("<") and data.endswith(">") else []


def _at(data, path: str):
    for part in path.replace("[", ".[").split("."):
        data = data[int(part[1:-1])] if part.startswith("[") else data[part]
    return data


def validate_datasets(data: dict, where="datasets.yml") -> dict:
    """Check a parsed board ``datasets.yml``; return it unchanged or raise :class:`InputError`."""
    check_schema(data, DATASETS_SCHEMA, where)
    return data
