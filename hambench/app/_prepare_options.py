"""How ``hambench prepare`` gets its flags: one per field of the sources' ``Options`` dataclasses (the union over
the registry), generated on first use so that other commands never import the source modules.
"""

from __future__ import annotations

from pathlib import Path

import click

from hambench.errors import HambenchError

__all__ = ["source_option_help", "source_option_table", "PrepareCommand", "DRIVER_FIELDS"]

#: driver fields of every source's Options: they are prepare's own flags, not generated ones
DRIVER_FIELDS = ("seed", "cutoff")

#: CLI help and constraints for source option fields whose ``Options`` metadata leaves them out, merged key by key
#: under the field's own metadata (which wins): ``"SOURCE:field"`` keys are per source, ``"field"`` keys for any.
#: Today every field carries its help; pyscf/qm9's counts lack the ``min`` that makes ``--limit 0`` a usage error.
_FALLBACK_HELP: dict[str, dict] = {
    "pyscf/qm9:limit": {"min": 1},
    "pyscf/qm9:max_atoms": {"min": 1},
    "pyscf/qm9:max_heavy": {"min": 0},
    "pyscf/qm9:max_cycle": {"min": 1},
    "pyscf/qm9:threads": {"min": 1},
    "pyscf/qm9:grid_level": {"min": 0},
}

#: source option field → its flag, where the flag is not ``--field-name`` (metadata ``flag`` also sets it)
_FLAG_NAMES = {"version": "--dataset-version"}


def source_option_help(source: str, field) -> dict:
    """CLI help of one ``Options`` field of ``source``: ``{"help", "choices", "min", "flag"}`` (those it has).

    Each key from the field's ``metadata`` where it gives one, else from :data:`_FALLBACK_HELP` (``{}`` if neither):
    a source's own metadata wins, the table fills what it leaves out (e.g. a ``min`` the CLI range-checks).
    """
    fallback = _FALLBACK_HELP.get(f"{source}:{field.name}") or _FALLBACK_HELP.get(field.name) or {}
    return {**fallback, **{k: v for k, v in (field.metadata or {}).items() if v is not None and v != ""}}


def _field_type(source: str, field) -> str:
    ann = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    types = [t.strip() for t in ann.split("|") if t.strip() != "None"]
    if len(types) != 1 or types[0] not in ("bool", "int", "float", "str", "Path"):
        raise TypeError(f"source {source}: option {field.name} has type {ann!r}; the CLI knows int, float, str, "
                        "Path and bool (each optionally | None)")
    return types[0]


def _tag(names: list[str]) -> str:
    """``[a/x, b/*]``: the sources of one help text, a family written ``family/*`` when all its sources share it."""
    from hambench.pipelines.registry import SOURCES

    out, done = [], set()
    for n in names:
        fam = n.split("/")[0]
        members = [m for m in SOURCES if m.split("/")[0] == fam]
        if len(members) > 1 and all(m in names for m in members):
            if fam not in done:
                out.append(f"{fam}/*")
                done.add(fam)
        else:
            out.append(n)
    return "[" + ", ".join(out) + "]"


def source_option_table() -> dict[str, dict]:
    """Every source option of the registry (the union over SOURCES, less seed/cutoff), keyed by field name:
    ``{"flag", "type", "help": {help text: [sources]}, "choices", "min", "sources"}``. Sources that do not import
    in this build are left out."""
    from hambench.pipelines.registry import SOURCES, option_fields

    table: dict[str, dict] = {}
    for source in SOURCES:
        try:
            fields = option_fields(source)
        except HambenchError:
            continue
        for f in fields:
            if f.name in DRIVER_FIELDS:
                continue
            info = source_option_help(source, f)
            typ = _field_type(source, f)
            row = table.setdefault(f.name, {"flag": info.get("flag") or _FLAG_NAMES.get(f.name)
                                             or "--" + f.name.replace("_", "-"),
                                             "type": typ, "help": {}, "choices": [], "min": [], "sources": []})
            if row["type"] != typ:
                raise TypeError(f"option {f.name} is {row['type']} in {row['sources'][0]} but {typ} in {source}")
            row["help"].setdefault(info.get("help") or "(no help yet)", []).append(source)
            row["choices"].append(tuple(info["choices"]) if info.get("choices") else None)
            row["min"].append(info.get("min"))
            row["sources"].append(source)
    return dict(sorted(table.items(), key=lambda kv: kv[1]["flag"]))


def _source_params() -> list[click.Option]:
    """The prepare flags generated from the sources' Options dataclasses (see :func:`source_option_table`)."""
    types = {"int": int, "float": float, "str": str, "Path": click.Path(path_type=Path)}
    params = []
    for name, row in source_option_table().items():
        help_text = "; ".join(f"{_tag(srcs)} {text.rstrip('.')}" for text, srcs in row["help"].items()) + "."
        kw: dict = {"help": help_text}
        choices = set(row["choices"])
        mins = row["min"]
        if row["type"] == "bool":
            kw["is_flag"] = True
        elif len(choices) == 1 and None not in choices:
            kw["type"] = click.Choice(next(iter(choices)), case_sensitive=False)
        elif row["type"] in ("int", "float") and None not in mins:
            rng = click.IntRange if row["type"] == "int" else click.FloatRange
            kw["type"] = rng(min=min(mins))
        else:
            kw["type"] = types[row["type"]]
        params.append(click.Option([row["flag"], name], **kw))
    return params


class PrepareCommand(click.Command):
    """``prepare`` with its source flags generated from the registry on first use (other commands never import
    the source modules)."""

    _built = False

    def get_params(self, ctx):
        if not self._built:
            own = {o for p in self.params for o in p.opts} | {p.name for p in self.params}
            for p in _source_params():
                if own & ({*p.opts, p.name}):
                    raise TypeError(f"source option {p.name} ({p.opts[0]}) clashes with a flag of prepare itself")
                self.params.append(p)
            self._built = True
        return super().get_params(ctx)
