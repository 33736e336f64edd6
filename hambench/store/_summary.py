"""What ``hambench info`` prints about a store: :func:`summary_dict` (its JSON form) and :func:`summary_text`."""

from __future__ import annotations

import numpy as np

from hambench.basis._conventions import z_to_symbol

__all__ = ["summary_dict", "summary_text"]


def summary_dict(store) -> dict:
    """Sizes, species, splits, provenance and units of an open :class:`~hambench.store._store.Store`."""
    meta, counts, layout = store.meta, store.meta.counts, store.layout
    files = [f for f in store.path.rglob("*") if f.is_file()]
    natoms = store.array("structures/natoms")[:]
    parent = store.array("structures/parent")[:]
    splits = {}
    for name, labels in meta.splits.items():
        codes = store.array(f"splits/{name}")[:]
        splits[name] = {lab: int(np.sum(codes == i)) for i, lab in enumerate(labels)}
    return {
        "path": str(store.path),
        "version": meta.version,
        "kind": meta.kind,
        "spinful": meta.spinful,
        "structures": counts.structures,
        "augmented": int(np.sum(parent >= 0)),
        "atoms": counts.atoms,
        "atoms_per_structure": [int(natoms.min()), int(natoms.max())] if len(natoms) else [0, 0],
        "edges": counts.edges,
        "matrix_elements": {"H": counts.H, "S": counts.S, "T": counts.T},
        "species": {z_to_symbol(z): {"shells": list(s), "orbitals": layout.norb(z, False)}
                    for z, s in meta.species.items()},
        "bytes_on_disk": sum(f.stat().st_size for f in files),
        "files": len(files),
        "splits": splits,
        "dft": dict(meta.dft),
        "source": dict(meta.source or {}),
        "excluded": list(meta.excluded or []),
        "units": dict(meta.units),
        "orbital_convention": meta.orbital_convention,
    }


def _n(count: int, word: str) -> str:
    """``1 structure``, ``1,234 structures``."""
    return f"{count:,} {word}{'s' if count != 1 else ''}"


def _val(v) -> str:
    """Floats short (300.0000000050607 → 300), everything else as is."""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def summary_text(d: dict) -> str:
    """The lines ``hambench info`` prints for a :func:`summary_dict`."""
    lo, hi = d["atoms_per_structure"]
    elements = d["matrix_elements"]
    lines = [
        f"{d['path']}: hambench store v{d['version']}, {d['kind']}{', spinful (SOC)' if d['spinful'] else ''}",
        f"  structures  {d['structures']:,} ({d['augmented']:,} rotation-augmented), "
        f"{lo if lo == hi else f'{lo}–{hi}'} atom{'s' if hi != 1 else ''} each",
        f"  atoms       {d['atoms']:,}",
        f"  edges       {d['edges']:,}",
        f"  elements    H {elements['H']:,}  S {elements['S']:,}  trace labels {elements['T']:,}",
        f"  on disk     {d['bytes_on_disk'] / 1e6:.2f} MB in {_n(d['files'], 'file')}",
        "  species     " + ", ".join(f"{el} {v['shells']} ({v['orbitals']} orbitals)" for el, v in d["species"].items()),
    ]
    for name, counts in d["splits"].items():
        lines.append(f"  split {name}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if d["dft"]:
        lines.append("  dft         " + ", ".join(f"{k}={_val(v)}" for k, v in d["dft"].items()))
    if d["source"]:
        given = d["source"].get("input")
        lines.append(f"  source      {d['source'].get('name')}"
                     + (f" ← {given}" if given not in (None, "None") else " (no input files: generated here)"))
    if d["excluded"]:
        lines.append(f"  excluded    {_n(len(d['excluded']), 'item')} (see `hambench info --json`)")
    lines.append(f"  units       {d['units']['energy']}, {d['units']['length']}; orbitals {d['orbital_convention']}")
    return "\n".join(lines)
