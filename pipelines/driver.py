"""Runs any prepare source into a store: ranges of items on the range runner, resumable parts, shard jobs.

Flow::

    items = source.items()                       # deterministic list of work items
    spin check (source.spinful_of, headers only) # mixed spinless/spinful inputs refused before any work
    ranges of items  ──range runner──▶  NAME.zarr.partial/parts/NNNNN.{bin,pkl} (+ .json marks it done)
    every shard of every array  ──range runner──▶  NAME.zarr.partial/store.zarr  ──seal, rename──▶  NAME.zarr

A range reads, validates (one compiled pass per array: finiteness and Hermitian pairing), traces and augments
its items and writes one part (:mod:`.parts`: raw bytes + a small header). A killed run leaves finished parts
behind; the same command resumes from them. The store is then written shard by shard: each shard is one job
that reads just its rows from the parts and writes the shard file itself (the bytes zarr writes), so with
``--workers N`` the writing is parallel too, and memory is one range or one shard per worker whatever the
number of structures. The store's bytes do not depend on the number of workers, on the ranges, or on
interruptions. Sealing records the shard manifest and content checksum (:func:`hambench.store.seal_store`), by
which every later open finds a missing or truncated shard and every later hash edited or damaged data.
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

from hambench import __version__, _core
from hambench.atomic import replace_dir, write_json
from hambench.basis import edge_traces, random_rotation, rotate_edge_blocks
from hambench.errors import ExcludedItem, HambenchError, InputError
from hambench.parallel import run_tasks, worker_pool
from hambench.store import ROWS, StoreRange, StoreWriter, Structure, resolved_path, seal_store
from . import get_source
from .parts import PART_FORMAT, read_part_header, shard_jobs, write_part, write_shard_job

__all__ = ["run", "process_range", "rotate_structure", "restrict_edges"]

#: items per range at most (a range is one Dask task and one part file)
MAX_RANGE_ITEMS = 64
SPLIT_ORDER = ("train", "val", "test")


# --- per-structure work (runs in workers) ----------------------------------------------------------------
def rotate_structure(s: Structure, R: np.ndarray, index: int, k: int) -> Structure:
    """A rigidly rotated copy (r' = R r) of structure ``s`` (local index ``index``): positions, cell, blocks."""
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
        H=rotate_edge_blocks(s.H, Zs, Zd, s.species, R, spinful=s.spinful),
        S=None if s.S is None else rotate_edge_blocks(s.S, Zs, Zd, s.species, R, spinful=False),
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


def _prepared(s: Structure, item, cutoff, zero_fill: bool, stats: dict) -> Structure:
    """``s`` validated and, with ``cutoff``, on the neighbour-list edges (counts added to ``stats``)."""
    where = s.sources[0][0] if s.sources else str(item)
    s.validate(path=where)
    if cutoff:
        s, c = restrict_edges(s, cutoff)
        if c["zero_filled"] and not zero_fill:
            raise InputError(where, f"--cutoff {cutoff:g} Å makes {c['zero_filled']:,} of {s.nedges:,} "
                                    f"edges pairs without a DFT block (they would be zero blocks); pass "
                                    f"--zero-fill to accept them, or use a smaller --cutoff")
        stats["zero_filled_edges"] += c["zero_filled"]
        stats["dropped"] += c["dropped"]
        stats["dft_edges"] += c["dft_edges"]
        stats["dropped_max_abs_H"] = max(stats["dropped_max_abs_H"], c["dropped_max_abs_H"])
    s.parent = -1
    return s


def _write_part(part: str, structs: list[Structure], traces: list, items) -> dict:
    """Write the structures as one part; returns what the manifest records of them (counts, splits, species)."""
    if any(s.spinful != structs[0].spinful for s in structs):
        raise InputError(items[0], "mixes spinful and spinless structures in one data set")
    for s in structs:  # a structure without an overlap is stored with zero S blocks
        if s.S is None:
            s.S = np.zeros(int(s.block_ptr(False)[-1]))
    r = StoreRange.from_structures(structs, traces=traces)
    write_part(part, r.columns())
    return {"splits": r.split_labels, "species": {str(z): sh for z, sh in r.species.items()},
            "spinful": bool(r.spinful), "atoms": int(r.Z.size), "edges": int(r.src.size), "H": int(r.H.size),
            "S": int(r.S.size), "T": int(r.T.size)}


def process_range(source, items: list, first_index: int, part: str, augment: int, seed: int, cutoff,
                  zero_fill: bool = False) -> dict:
    """Read, check, convert and augment the structures of ``items``; write them as one part file.

    With ``cutoff`` the edges come from the neighbour list: a pair the DFT file has no block for would be a zero
    block, which is refused (InputError naming the structure, with counts) unless ``zero_fill``.

    Returns the part's manifest (sizes, ids of excluded items). ``first_index`` is the global index of the
    range's first item: rotations are seeded by (seed, item index, structure, copy), so they do not depend on
    how items are grouped into ranges.
    """
    structs: list[Structure] = []
    traces = []
    excluded = []
    stats = {"zero_filled_edges": 0, "dropped": 0, "dft_edges": 0, "dropped_max_abs_H": 0.0}
    parent_ids: dict[str, str] = {}
    for n, item in enumerate(items):
        try:
            got = source.read(item)
        except ExcludedItem as e:
            excluded.append({"item": str(item), "reason": str(e)})
            continue
        for m, s in enumerate(got):
            parent_id = s.__dict__.pop("parent_id", None)  # a source's own rotated copy (re-imported exports)
            s = _prepared(s, item, cutoff, zero_fill, stats)
            t = edge_traces(s.H, s.Z[s.src], s.Z[s.dst], s.species, spinful=s.spinful)
            local = len(structs)
            if parent_id is not None:
                parent_ids[str(local)] = str(parent_id)
            structs.append(s)
            traces.append(t)
            rng = np.random.default_rng([seed, first_index + n, m])
            for k in range(augment):
                structs.append(rotate_structure(s, random_rotation(rng), local, k))
                traces.append(t)  # traces are rotation invariant: the parent's labels, exactly
    manifest = {
        "structures": len(structs),
        "excluded": excluded,
        "zero_filled_edges": stats.pop("zero_filled_edges"),
        "cutoff": stats,
        "parent_ids": parent_ids,
        "splits": {},
        "species": {},
        "spinful": None,
    }
    if structs:
        manifest.update(_write_part(part, structs, traces, items))
    write_json(f"{part}.json", manifest, indent=None)  # the .json marks the part as finished
    return manifest


# --- the run ---------------------------------------------------------------------------------------------
def _ranges(n: int, workers: int, max_items: int = MAX_RANGE_ITEMS) -> list[list[int]]:
    size = max(1, min(max_items, math.ceil(n / max(1, 4 * workers))))
    return [[a, min(n, a + size)] for a in range(0, n, size)]


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _check_arguments(output: Path, augment: int, workers: int, cutoff, overwrite: bool) -> None:
    if augment < 0:
        raise InputError(None, f"--augment must be >= 0, got {augment}")
    if workers < 1:
        raise InputError(None, f"--workers must be >= 1, got {workers}")
    if cutoff is not None and not cutoff > 0:
        raise InputError(None, f"--cutoff must be positive, got {cutoff}")
    if output.exists() and not overwrite:
        raise InputError(output, "exists already; choose another -o or pass --overwrite")


def _plan(partial: Path, key: dict, n_items: int, one_item_ranges: bool, workers: int, scheduler) -> list:
    """The item ranges of the run: those of the partial run it resumes (same key), else new ones (recorded)."""
    manifest_path = partial / "manifest.json"
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
            if old.get("key") == key:
                return old["ranges"]
        except (OSError, ValueError):
            pass
        print(f"hambench: {partial} is from a different command; starting over", file=sys.stderr)
        shutil.rmtree(partial)
    (partial / "parts").mkdir(parents=True, exist_ok=True)
    # DFT sources: one item per range, so the bar (and its ETA) moves with every finished DFT run
    ranges = _ranges(n_items, workers if scheduler is None else 8, 1 if one_item_ranges else MAX_RANGE_ITEMS)
    write_json(manifest_path, {"key": key, "ranges": ranges})
    return ranges


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
    _check_arguments(output, augment, workers, cutoff, overwrite)
    if source.startswith("pyscf/") and "raw_dir" not in options:
        options["raw_dir"] = output.with_name(output.name.removesuffix(".zarr") + ".raw")
    src = get_source(source, input_path, seed=seed, cutoff=cutoff, **options)
    items = src.items()
    if not items:
        raise InputError(input_path, f"no input for source {source} found here")
    _check_spin(src, items, input_path)
    _say_expected_time(src, source, items, workers if scheduler is None else None)
    partial = output.with_name(output.name + ".partial")
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
    ranges = _plan(partial, key, len(items), hasattr(src, "expected_seconds"), workers, scheduler)
    part_name = [str(partial / "parts" / f"{r:05d}") for r in range(len(ranges))]
    todo = [r for r in range(len(ranges)) if not Path(part_name[r] + ".json").exists()]
    done_items = sum(b - a for r, (a, b) in enumerate(ranges) if r not in set(todo))
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


def _merge_parts(filled: list[dict], input_path) -> tuple[bool, dict, dict, dict]:
    """(spinful, species, split labels, counts) of the store made of the parts ``filled`` (their manifests);
    parts of mixed spin or with other shells for one element are refused."""
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
            split_labels[name] = sorted(set(split_labels.get(name, [])) | set(labs),
                                        key=lambda x: (SPLIT_ORDER.index(x) if x in SPLIT_ORDER else 9, x))
    counts = {c: sum(m.get(c, 0) for m in filled) for c in ROWS}
    return spinful.pop(), dict(sorted(species.items(), key=lambda kv: int(kv[0]))), split_labels, counts


def _cutoff_counts(manifests: list[dict]) -> tuple[int, int, float]:
    """(DFT pairs dropped, DFT pairs, largest |H| dropped in eV) over the parts of a ``--cutoff`` run."""
    cuts = [m["cutoff"] for m in manifests]
    return (int(sum(c["dropped"] for c in cuts)), int(sum(c["dft_edges"] for c in cuts)),
            max((c["dropped_max_abs_H"] for c in cuts), default=0.0))


def _store_attrs(src, source: str, input_path, options: dict, key: dict, manifests: list[dict], spinful: bool,
                 species: dict, split_labels: dict) -> dict:
    """The attributes of the store (the driver's, then the keys the source declares besides its fields)."""
    declared = src.attrs()  # hambench.store.StoreAttrs
    attrs = {
        "kind": declared.kind,
        "spinful": spinful,
        "species": species,
        "dft": declared.dft,
        "constants": declared.constants,
        "splits": split_labels,
        "source": {"name": source, "input": None if input_path is None else resolved_path(input_path),
                   "options": {k: str(v) for k, v in sorted(options.items()) if k != "raw_dir"},
                   "augment": key["augment"], "seed": key["seed"], "cutoff": key["cutoff"]},
        "created_by": {"hambench": __version__},
        "excluded": [e for m in manifests for e in m["excluded"]],
        "zero_filled_edges": int(sum(m["zero_filled_edges"] for m in manifests)),
    }
    if key["cutoff"]:
        (attrs["cutoff_dropped_edges"], attrs["cutoff_dft_edges"],
         attrs["cutoff_dropped_max_abs_H"]) = _cutoff_counts(manifests)
    for k, v in declared.extra.items():
        attrs.setdefault(k, v)
    return attrs


def _parent_fixes(stems: list[str], filled: list[dict]) -> dict[int, dict]:
    """Part number → {"parent": {local: global index}, "eye": [local]} for structures whose parent a source named
    by id: the index of that id in this store, or (a parent not in the store) an original after all."""
    if not any(m.get("parent_ids") for m in filled):
        return {}
    global_index, offset = {}, 0
    for p, m in zip(stems, filled):
        ids = read_part_header(p)["objects"]["structures/id"]
        global_index.update({str(sid): offset + k for k, sid in enumerate(ids)})
        offset += m["structures"]
    fixes = {}
    for n, m in enumerate(filled):
        fix = {"parent": {}, "eye": []}
        for local, pid in m.get("parent_ids", {}).items():
            if pid in global_index:
                fix["parent"][int(local)] = global_index[pid]
            else:
                fix["eye"].append(int(local))
        fixes[n] = fix
    return fixes


def _summary(output: Path, counts: dict, manifests: list[dict], key: dict) -> str:
    """The line ``prepare`` prints (and the ``--cutoff`` warning on stderr)."""
    def n(count, word):
        return f"{count:,} {word}{'s' if count != 1 else ''}"

    nbytes = sum(f.stat().st_size for f in output.rglob("*") if f.is_file())
    msg = (f"wrote {output}: {n(counts['structures'], 'structure')}, {n(counts['atoms'], 'atom')}, "
           f"{n(counts['edges'], 'edge')}, {counts['H']:,} H elements, {nbytes / 1e6:.1f} MB")
    excluded = sum(len(m["excluded"]) for m in manifests)
    if excluded:
        msg += f"; {n(excluded, 'item')} excluded (hambench info --json {output})"
    zero_filled = sum(m["zero_filled_edges"] for m in manifests)
    if zero_filled:
        msg += f"; {zero_filled:,} of {counts['edges']:,} edges zero-filled (--zero-fill)"
    dropped, dft_edges, worst = _cutoff_counts(manifests) if key["cutoff"] else (0, 0, 0.0)
    if dropped:
        warning = (f"--cutoff {key['cutoff']:g} Å dropped {dropped:,} of {dft_edges:,} DFT pairs "
                   f"(|H| up to {worst:.3g} eV)")
        print(f"hambench: warning: {warning}", file=sys.stderr)
        msg += f"; {warning}"
    return msg


def _assemble(partial, output, part_name, src, source, input_path, options, key, workers=1, scheduler=None,
              quiet=True, pool=None) -> str:
    """Write the store from the finished parts (one job per shard), rename it into place; the summary line."""
    manifests = [json.loads(Path(p + ".json").read_text()) for p in part_name]
    filled = [m for m in manifests if m["structures"]]
    if not filled:
        excluded = sum(len(m["excluded"]) for m in manifests)
        raise InputError(input_path, f"no structure could be prepared ({excluded} items excluded)")
    spinful, species, split_labels, counts = _merge_parts(filled, input_path)
    attrs = _store_attrs(src, source, input_path, options, key, manifests, spinful, species, split_labels)
    tmp_store = partial / "store.zarr"
    writer = StoreWriter(tmp_store, counts, attrs, list(split_labels))  # a fresh store: metadata, attributes
    stems = [p for p, m in zip(part_name, manifests) if m["structures"]]  # the parts of ``filled``
    jobs = shard_jobs(tmp_store, writer.arrays, stems, filled, _parent_fixes(stems, filled), split_labels)
    run_tasks(write_shard_job, [j for j, _ in jobs], workers=workers, scheduler=scheduler, quiet=quiet,
              label=f"write {output.name}", sizes=[max(1, nbytes >> 20) for _, nbytes in jobs], unit="MiB",
              pool=pool)
    seal_store(tmp_store)  # the shard manifest and content checksum: later opens find missing or damaged files
    replace_dir(tmp_store, output)  # --overwrite was checked before any work
    shutil.rmtree(partial)
    return _summary(output, counts, manifests, key)
