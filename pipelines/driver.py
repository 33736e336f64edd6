"""Runs any prepare source into a store: ranges of items on the range runner, resumable parts, shard jobs.

Flow::

    items = source.items()                       # deterministic list of work items
    spin check (source.spinful_of, headers only) # mixed spinless/spinful inputs refused before any work
    ranges of items  ──range runner──▶  NAME.zarr.partial/parts/NNNNN.{bin,pkl} (+ .json marks it done)
    every shard of every array  ──range runner──▶  NAME.zarr.partial/store.zarr  ──rename──▶  NAME.zarr

A range reads, validates (one compiled pass per array: finiteness and Hermitian pairing), traces and augments
its items and writes one part (:mod:`.parts`: raw bytes + a small header). A killed run leaves finished parts
behind; the same command resumes from them. The store is then written shard by shard: each shard is one job
that reads just its rows from the parts and writes the shard file itself (the bytes zarr writes), so with
``--workers N`` the writing is parallel too, and memory is one range or one shard per worker whatever the
number of structures. The store's bytes do not depend on the number of workers, on the ranges, or on
interruptions.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from hambench import __version__
from hambench.atomic import replace_dir, write_json
from hambench.errors import ExcludedItem, HambenchError, InputError
from hambench.store._store import _resolved, structure_arrays
from hambench.store._structure import Structure
from . import get_source
from .parts import PART_FORMAT, read_part_header, shard_jobs, write_part, write_shard_job

__all__ = ["run", "process_range", "structure_arrays", "rotate_structure", "restrict_edges"]

#: items per range at most (a range is one Dask task and one part file)
MAX_RANGE_ITEMS = 64
SPLIT_ORDER = ("train", "val", "test")


# --- per-structure work (runs in workers) ----------------------------------------------------------------
def rotate_structure(s: Structure, R: np.ndarray, index: int, k: int) -> Structure:
    """A rigidly rotated copy (r' = R r) of structure ``s`` (local index ``index``): positions, cell, blocks."""
    from hambench.basis import _so3 as so3

    Zs, Zd = s.Z[s.src], s.Z[s.dst]
    return Structure(
        id=f"{s.id}/rot{k}",
        Z=s.Z,
        pos=s.pos @ R.T,
        cell=s.cell @ R.T,
        pbc=s.pbc,
        src=s.src,
        dst=s.dst,
        shift=s.shift,
        H=so3.rotate_edge_blocks(s.H, Zs, Zd, s.species, R, spinful=s.spinful),
        S=None if s.S is None else so3.rotate_edge_blocks(s.S, Zs, Zd, s.species, R, spinful=False),
        species=s.species,
        spinful=s.spinful,
        energy=s.energy,
        nelectron=s.nelectron,
        fermi_level=s.fermi_level,
        rotation=R,
        parent=index,
        sources=s.sources,
        splits=s.splits,
    )


def restrict_edges(s: Structure, cutoff: float) -> tuple[Structure, dict]:
    """Replace the edges of ``s`` by the neighbour list within ``cutoff`` (Å).

    Blocks of edges the DFT file has are kept; pairs the file lacks (beyond the basis functions' reach, where
    H and S vanish) get zero blocks. Returns the new structure and the counts of what changed:
    ``{"zero_filled": edges with no DFT block, "dropped": DFT edges beyond the cutoff, "dft_edges": DFT edges,
    "dropped_max_abs_H": largest |H| element of a dropped block (eV)}``.
    """
    from hambench import _core

    src, dst, shift = _core.neighbor_list(s.pos, s.cell, tuple(bool(x) for x in s.pbc), float(cutoff))
    index = s.edge_index()
    hp, sp = s.block_ptr(), s.block_ptr(False)
    new = Structure(id=s.id, Z=s.Z, pos=s.pos, cell=s.cell, pbc=s.pbc, src=src, dst=dst, shift=shift,
                    H=np.zeros(0), S=None, species=s.species, spinful=s.spinful)
    nhp, nsp = new.block_ptr(), new.block_ptr(False)
    H = np.zeros(int(nhp[-1]), dtype=s.H.dtype)
    S = np.zeros(int(nsp[-1])) if s.S is not None else None
    missing = 0
    kept = np.zeros(s.nedges, bool)
    for e, (i, j, r) in enumerate(zip(src, dst, shift)):
        f = index.get((int(i), int(j), *map(int, r)))
        if f is None:
            missing += 1
            continue
        kept[f] = True
        H[nhp[e] : nhp[e + 1]] = s.H[hp[f] : hp[f + 1]]
        if S is not None:
            S[nsp[e] : nsp[e + 1]] = s.S[sp[f] : sp[f + 1]]
    out = Structure(**{**s.__dict__, "src": src, "dst": dst, "shift": shift, "H": H, "S": S})
    dropped = np.flatnonzero(~kept)
    worst = max((float(np.abs(s.H[hp[f]:hp[f + 1]]).max(initial=0.0)) for f in dropped), default=0.0)
    return out, {"zero_filled": missing, "dropped": int(dropped.size), "dft_edges": int(s.nedges),
                 "dropped_max_abs_H": worst}


def process_range(source, items: list, first_index: int, part: str, augment: int, seed: int, cutoff,
                  zero_fill: bool = False) -> dict:
    """Read, check, convert and augment the structures of ``items``; write them as one part file.

    With ``cutoff`` the edges come from the neighbour list: a pair the DFT file has no block for would be a zero
    block, which is refused (InputError naming the structure, with counts) unless ``zero_fill``.

    Returns the part's manifest (sizes, ids of excluded items). ``first_index`` is the global index of the
    range's first item: rotations are seeded by (seed, item index, structure, copy), so they do not depend on
    how items are grouped into ranges.
    """
    from hambench.basis import _so3 as so3

    structs: list[Structure] = []
    traces = []
    excluded = []
    zero_filled = 0
    cut = {"dropped": 0, "dft_edges": 0, "dropped_max_abs_H": 0.0}
    parent_ids: dict[str, str] = {}
    for n, item in enumerate(items):
        try:
            got = source.read(item)
        except ExcludedItem as e:
            excluded.append({"item": str(item), "reason": str(e)})
            continue
        for m, s in enumerate(got):
            parent_id = s.__dict__.pop("parent_id", None)  # a source's own rotated copy (re-imported exports)
            where = s.sources[0][0] if s.sources else str(item)
            s.validate(path=where)
            if cutoff:
                s, c = restrict_edges(s, cutoff)
                if c["zero_filled"] and not zero_fill:
                    raise InputError(where, f"--cutoff {cutoff:g} Å makes {c['zero_filled']:,} of {s.nedges:,} "
                                            f"edges pairs without a DFT block (they would be zero blocks); pass "
                                            f"--zero-fill to accept them, or use a smaller --cutoff")
                zero_filled += c["zero_filled"]
                cut["dropped"] += c["dropped"]
                cut["dft_edges"] += c["dft_edges"]
                cut["dropped_max_abs_H"] = max(cut["dropped_max_abs_H"], c["dropped_max_abs_H"])
            t = so3.edge_traces(s.H, s.Z[s.src], s.Z[s.dst], s.species, spinful=s.spinful)
            s.parent = -1
            local = len(structs)
            if parent_id is not None:
                parent_ids[str(local)] = str(parent_id)
            structs.append(s)
            traces.append(t)
            rng = np.random.default_rng([seed, first_index + n, m])
            for k in range(augment):
                R = so3.random_rotation(rng)
                structs.append(rotate_structure(s, R, local, k))
                traces.append(t)  # traces are rotation invariant: the parent's labels, exactly
    manifest = {
        "structures": len(structs),
        "excluded": excluded,
        "zero_filled_edges": zero_filled,
        "cutoff": cut,
        "parent_ids": parent_ids,
        "splits": {},
        "species": {},
        "spinful": None,
    }
    if structs:
        batch = structure_arrays(structs, traces)
        names = sorted({k for s in structs for k in s.splits})
        for name in names:
            batch[f"splitlabel/{name}"] = np.array([s.splits.get(name, "") for s in structs], dtype=object)
        manifest.update(
            splits={name: sorted({s.splits[name] for s in structs if name in s.splits}) for name in names},
            species={str(z): sh for s in structs for z, sh in s.species.items()},
            spinful=bool(structs[0].spinful),
            atoms=int(batch["atoms/Z"].size),
            edges=int(batch["edges/src"].size),
            H=int(batch["blocks/H"].size),
            S=int(batch["blocks/S"].size),
            T=int(batch["blocks/T"].size),
        )
        if any(s.spinful != structs[0].spinful for s in structs):
            raise InputError(items[0], "mixes spinful and spinless structures in one data set")
        write_part(part, batch)
    write_json(f"{part}.json", manifest, indent=None)  # the .json marks the part as finished
    return manifest


# --- the run ---------------------------------------------------------------------------------------------
def _ranges(n: int, workers: int, max_items: int = MAX_RANGE_ITEMS) -> list[list[int]]:
    size = max(1, min(max_items, math.ceil(n / max(1, 4 * workers))))
    return [[a, min(n, a + size)] for a in range(0, n, size)]


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run(
    source: str,
    input_path,
    output,
    *,
    quiet: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    augment: int = 0,
    seed: int = 0,
    cutoff: float | None = None,
    zero_fill: bool = False,
    overwrite: bool = False,
    **options,
) -> str:
    """Prepare ``output`` (a ``.zarr`` store) from ``source`` reading ``input_path``; returns a summary line.

    ``cutoff`` (Å): edges from the neighbour list instead of the DFT pair list; DFT pairs beyond it are dropped (a
    warning on stderr with the counts) and pairs within it the DFT file lacks are refused unless ``zero_fill``.
    """
    t0 = time.perf_counter()
    output = Path(output)
    if augment < 0:
        raise InputError(None, f"--augment must be >= 0, got {augment}")
    if workers < 1:
        raise InputError(None, f"--workers must be >= 1, got {workers}")
    if cutoff is not None and not cutoff > 0:
        raise InputError(None, f"--cutoff must be positive, got {cutoff}")
    if output.exists() and not overwrite:
        raise InputError(output, "exists already; choose another -o or pass --overwrite")
    if source.startswith("pyscf/") and "raw_dir" not in options:
        options["raw_dir"] = output.with_name(output.name.removesuffix(".zarr") + ".raw")
    src = get_source(source, input_path, seed=seed, cutoff=cutoff, **options)
    items = src.items()
    if not items:
        raise InputError(input_path, f"no input for source {source} found here")
    _check_spin(src, items, input_path)
    _say_expected_time(src, source, items, workers if scheduler is None else None)
    partial = output.with_name(output.name + ".partial")
    parts_dir = partial / "parts"
    key = {
        "source": source,
        "input": str(input_path),
        "options": {k: str(v) for k, v in sorted(options.items())},
        "augment": augment,
        "seed": seed,
        "cutoff": cutoff,
        "items": _fingerprint([str(i) for i in items]),
        "hambench": __version__,
        "parts": PART_FORMAT,  # partials of another part format start over
    }
    manifest_path = partial / "manifest.json"
    ranges = None
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
            if old.get("key") == key:
                ranges = old["ranges"]
        except (OSError, ValueError):
            ranges = None
        if ranges is None:
            print(f"hambench: {partial} is from a different command; starting over", file=sys.stderr)
            shutil.rmtree(partial)
    if ranges is None:
        parts_dir.mkdir(parents=True, exist_ok=True)
        # DFT sources: one item per range, so the bar (and its ETA) moves with every finished DFT run
        ranges = _ranges(len(items), workers if scheduler is None else 8,
                         1 if hasattr(src, "expected_seconds") else MAX_RANGE_ITEMS)
        write_json(manifest_path, {"key": key, "ranges": ranges})

    part_name = [str(parts_dir / f"{r:05d}") for r in range(len(ranges))]
    todo = [r for r in range(len(ranges)) if not Path(part_name[r] + ".json").exists()]
    done_items = sum(b - a for r, (a, b) in enumerate(ranges) if r not in set(todo))
    from hambench.parallel import worker_pool

    try:
        with worker_pool(workers, scheduler) as pool:  # one fork: the same warm workers read and then write
            _execute(src, items, ranges, todo, part_name, augment, seed, (cutoff, zero_fill), workers, scheduler,
                     quiet, done_items, f"prepare {source}", pool)
            summary = _assemble(partial, output, part_name, src, source, input_path, options, key, workers,
                                scheduler, quiet, pool)
    except HambenchError:
        shutil.rmtree(partial, ignore_errors=True)  # bad input: nothing half-written stays behind
        raise
    dt = time.perf_counter() - t0
    if options.get("raw_dir") is not None and Path(options["raw_dir"]).is_dir():
        summary += f"; raw DFT results cached in {options['raw_dir']} (reruns reuse them; delete it to recompute)"
    return summary + f" in {dt:.1f} s"


def _check_spin(src, items, input_path) -> None:
    """Refuse, before any worker starts, inputs that mix spinless and spinful runs (one line naming one of each).

    Sources that can tell cheaply (``spinful_of(item)``: a header or an info.json, not the data) are checked
    here; the others (and items that say None) are checked as their structures are read.
    """
    spinful_of = getattr(src, "spinful_of", None)
    if spinful_of is None:
        return
    first: dict[bool, object] = {}
    for item in items:
        sp = spinful_of(item)
        if sp is None or sp in first:
            continue
        first[bool(sp)] = item
        if len(first) == 2:
            raise InputError(input_path, f"mixes spinful and spinless runs ({first[True]} is spinful, "
                                         f"{first[False]} spinless); one data set holds one kind: prepare them "
                                         "into two stores")


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _say_expected_time(src, source, items, workers) -> None:
    """DFT sources (``expected_seconds(item)``): one line on stderr with the expected time, before any work."""
    estimate = getattr(src, "expected_seconds", None)
    if estimate is None:
        return
    t = [float(estimate(i)) for i in items]
    todo = sum(1 for x in t if x > 0)
    total = sum(t)
    if not todo:
        print(f"hambench: {source}: all {len(items):,} DFT results cached", file=sys.stderr)
        return
    cached = f", {len(items) - todo:,} cached" if todo < len(items) else ""
    par = (f" (~{_fmt_duration(max(total / workers, max(t)))} with {workers} workers)"
           if workers and workers > 1 else "")
    print(f"hambench: {source}: {todo:,} DFT run{'s' * (todo != 1)} to do{cached}, expected "
          f"~{_fmt_duration(total)} on one worker{par} (fit of benchmarks/results/bench_{source.replace('/', '_')}.txt, "
          f"2-core machine)", file=sys.stderr)


def _execute(src, items, ranges, todo, part_name, augment, seed, cutoff, workers, scheduler, quiet, done, label,
             pool=None):
    """Run the unfinished ranges through the core range runner (local processes or a Dask scheduler)."""
    from hambench.parallel import run_tasks

    nexcluded = 0

    def advance(i, manifest):
        nonlocal nexcluded
        nexcluded += len(manifest["excluded"])
        return f"excluded {nexcluded}" if nexcluded else ""

    cutoff, zero_fill = cutoff
    tasks = [(src, items[ranges[r][0]:ranges[r][1]], ranges[r][0], part_name[r], augment, seed, cutoff, zero_fill)
             for r in todo]
    run_tasks(process_range, tasks, workers=workers, scheduler=scheduler, quiet=quiet, label=label,
              sizes=[ranges[r][1] - ranges[r][0] for r in todo], done=done, unit="items", on_result=advance,
              pool=pool)


def _assemble(partial, output, part_name, src, source, input_path, options, key, workers=1, scheduler=None,
              quiet=True, pool=None) -> str:
    from hambench.store._store import StoreWriter

    manifests = [json.loads(Path(p + ".json").read_text()) for p in part_name]
    filled = [m for m in manifests if m["structures"]]
    excluded = [e for m in manifests for e in m["excluded"]]
    if not filled:
        raise InputError(input_path, f"no structure could be prepared ({len(excluded)} items excluded)")
    spinful = {m["spinful"] for m in filled}
    if len(spinful) != 1:
        raise InputError(input_path, "mixes spinful and spinless structures in one data set")
    species: dict[str, list[int]] = {}
    for m in filled:
        for z, sh in m["species"].items():
            if species.setdefault(z, sh) != sh:
                raise InputError(input_path, f"element Z={z} has different shells in different structures: "
                                             f"{species[z]} vs {sh}")
    split_labels: dict[str, list[str]] = {}
    for m in filled:
        for name, labs in m["splits"].items():
            split_labels.setdefault(name, [])
            split_labels[name] = sorted(set(split_labels[name]) | set(labs),
                                        key=lambda x: (SPLIT_ORDER.index(x) if x in SPLIT_ORDER else 9, x))
    counts = {c: sum(m.get(c, 0) for m in filled) for c in ("structures", "atoms", "edges", "H", "S", "T")}
    sattrs = src.attrs().to_dict()  # hambench.store._meta.StoreAttrs: the dict the source declared
    attrs = {
        "kind": sattrs.get("kind", "crystal"),
        "spinful": spinful.pop(),
        "species": dict(sorted(species.items(), key=lambda kv: int(kv[0]))),
        "dft": sattrs.get("dft", {}),
        "constants": sattrs.get("constants", "CODATA2018"),
        "splits": split_labels,
        "source": {"name": source, "input": None if input_path is None else _resolved(input_path),
                   "options": {k: str(v) for k, v in sorted(options.items()) if k != "raw_dir"},
                   "augment": key["augment"], "seed": key["seed"], "cutoff": key["cutoff"]},
        "created_by": {"hambench": __version__},
        "excluded": excluded,
        "zero_filled_edges": int(sum(m["zero_filled_edges"] for m in manifests)),
    }
    if key["cutoff"]:
        cuts = [m.get("cutoff", {}) for m in manifests]
        attrs["cutoff_dropped_edges"] = int(sum(c.get("dropped", 0) for c in cuts))
        attrs["cutoff_dft_edges"] = int(sum(c.get("dft_edges", 0) for c in cuts))
        attrs["cutoff_dropped_max_abs_H"] = max((c.get("dropped_max_abs_H", 0.0) for c in cuts), default=0.0)
    for k, v in sattrs.items():
        attrs.setdefault(k, v)
    tmp_store = partial / "store.zarr"
    writer = StoreWriter(tmp_store, counts, attrs, list(split_labels))  # a fresh store: metadata, attributes
    stems = [p for p, m in zip(part_name, manifests) if m["structures"]]  # the parts of ``filled``
    fixes: dict[int, dict] = {}
    if any(m.get("parent_ids") for m in filled):  # parents named by id: the index of that id in this store
        global_index, offset = {}, 0
        for p, m in zip(stems, filled):
            ids = read_part_header(p)["objects"]["structures/id"]
            global_index.update({str(sid): offset + k for k, sid in enumerate(ids)})
            offset += m["structures"]
        for n, m in enumerate(filled):
            fix = {"parent": {}, "eye": []}
            for local, pid in m.get("parent_ids", {}).items():
                if pid in global_index:
                    fix["parent"][int(local)] = global_index[pid]
                else:  # its parent is not part of this store: an original after all
                    fix["eye"].append(int(local))
            fixes[n] = fix
    sizes = [{c: m[c] for c in ("structures", "atoms", "edges", "H", "S", "T")} for m in filled]
    jobs = shard_jobs(tmp_store, writer.layouts, stems, sizes, fixes, split_labels)
    from hambench.parallel import run_tasks

    run_tasks(write_shard_job, [j for j, _ in jobs], workers=workers, scheduler=scheduler, quiet=quiet,
              label=f"write {output.name}", sizes=[max(1, nbytes >> 20) for _, nbytes in jobs], unit="MiB",
              pool=pool)
    replace_dir(tmp_store, output)  # --overwrite was checked before any work
    shutil.rmtree(partial)
    nbytes = sum(f.stat().st_size for f in output.rglob("*") if f.is_file())
    def n(count, word):
        return f"{count:,} {word}{'s' if count != 1 else ''}"

    msg = (f"wrote {output}: {n(counts['structures'], 'structure')}, {n(counts['atoms'], 'atom')}, "
           f"{n(counts['edges'], 'edge')}, {counts['H']:,} H elements, {nbytes / 1e6:.1f} MB")
    if excluded:
        msg += f"; {n(len(excluded), 'item')} excluded (hambench info --json {output})"
    if attrs["zero_filled_edges"]:
        msg += f"; {attrs['zero_filled_edges']:,} of {counts['edges']:,} edges zero-filled (--zero-fill)"
    if attrs.get("cutoff_dropped_edges"):
        warning = (f"--cutoff {key['cutoff']:g} Å dropped {attrs['cutoff_dropped_edges']:,} of "
                   f"{attrs['cutoff_dft_edges']:,} DFT pairs (|H| up to {attrs['cutoff_dropped_max_abs_H']:.3g} eV)")
        print(f"hambench: warning: {warning}", file=sys.stderr)
        msg += f"; {warning}"
    return msg
