"""Running models of the zoo: config resolution, building from the registry, training runs, checkpoints, predict.

This is the layer between the CLI and the core: it knows the registry (``hambench.models``) and the core
(store, data, engine, predictions), so ``hambench/training`` stays free of model imports.

* :func:`resolve_config` — dataclass defaults ← ``models/configs/<name>.yaml`` ← preset ← ``--config`` ←
  ``--set`` ← CLI flags, into the model's config dataclass and :class:`hambench.training.TrainConfig`.
* :func:`build_model` — the registry's builder under the run's seed and dtype.
* :func:`train_run` — ``hambench train``: store checks (kind, spin), split, loaders (DDP-sharded under
  torchrun), edge cut-offs, checkpoint metadata, ``--resume`` (same config or one :class:`InputError` line).
* :func:`load_model` — a checkpoint back to a model (refusing corrupt or foreign files).
* :func:`predict_store`, :func:`predict_structures` — ``hambench predict`` with ``--data`` or ``--structures``.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hambench import __version__
from hambench.atomic import check_output, partial_path, replace_dir, write_json
from hambench.basis import BasisLayout, dft_gaussian_basis, gaussian_overlap_blocks
from hambench.config import from_dict, load_yaml, merge, parse_set, resolve, to_dict
from hambench.errors import InputError
from hambench.store import (StoreRange, StoreWriter, Structure, edge_cutoffs, file_sha256, open_store, require_truth,
                            select_split, store_checksum, write_predictions)
from hambench.training import (RESUME_MAY_CHANGE, Checkpoint, TrainConfig, Trainer, code_version, collate, dist_info,
                               load_checkpoint, make_loader, seed_everything, torch_dtype)

from . import registry
from ._chunked import DEFAULT_EDGE_CHUNK, chunked_forward, supports_chunking
from ._fast_tp import KERNELS, building, default_kernel, set_kernel
from ._frames import edges_for, frame_structures, read_structures
from ._reach import unreachable_parts
from ._stage1 import load_stage1, stage1_of, stage1_record
from .common import default_dtype

__all__ = [
    "Resolved",
    "resolve_config",
    "build_model",
    "load_stage1",
    "stage1_record",
    "split_indices",
    "train_run",
    "load_model",
    "predict_store",
    "predict_structures",
    "read_structures",
    "edges_for",
]


@dataclass
class Resolved:
    spec: registry.ModelSpec
    model: object  # the model's config dataclass
    train: TrainConfig
    preset: str | None
    kernel: str | None = None  # model.kernel (e3nn | fast): how the model computes, not what; not checkpointed

    def as_dict(self) -> dict:
        return {"model": to_dict(self.model), "train": to_dict(self.train)}


def resolve_config(name: str, preset: str | None = "paper", config_file=None, sets=(), overrides: dict | None = None,
                   base: dict | None = None) -> Resolved:
    """Resolve the configs of model ``name``.

    ``base``: a config dict {model, train} used instead of the YAML + preset (``--resume`` without config
    options takes the checkpoint's). ``overrides``: {"train": {...}} from CLI flags, applied last.
    A bad value is reported against the layer that brought it: the YAML file, ``--config FILE``, the
    ``--set KEY=VALUE`` item or the flag (:func:`_layers`).
    """
    spec = registry.get(name)
    layers = _layers(spec, name, preset, config_file, sets, overrides, base)
    try:
        model_cfg, train_cfg, kernel = _typed(spec, layers[-1][1], layers[-1][0])
        return Resolved(spec, model_cfg, train_cfg, preset, kernel)
    except InputError as e:
        for where, partial in layers:  # the first layer after which the config no longer holds is to blame
            try:
                _typed(spec, partial, where)
            except InputError as first:
                raise first from None
        raise e from None


def _layers(spec, name, preset, config_file, sets, overrides, base) -> list[tuple[str, dict]]:
    """The config after each layer, in order, with the name of what the layer came from: the model's YAML with
    its preset (or the checkpoint's config), ``--config``, each ``--set`` item, each flag (``overrides``)."""
    if base is not None:
        d, where = merge(base, {}), "the run's checkpoint config"
    else:
        if not spec.config_file.is_file():
            raise InputError(spec.config_file, f"config file of model {name!r} is missing")
        d, where = resolve(spec.config_file, preset), str(spec.config_file)
    layers = [(where, d)]
    if config_file is not None:
        user = load_yaml(config_file)
        user.pop("presets", None)
        layers.append((str(config_file), merge(layers[-1][1], user)))
    for item in sets or ():
        layers.append((f"--set {item}", merge(layers[-1][1], parse_set([item]))))
    for part, values in (overrides or {}).items():
        for key, value in (values or {}).items():
            flag = "--" + key.replace("_", "-")
            layers.append((flag, merge(layers[-1][1], {part: {key: value}})))
    return layers


def _typed(spec, d: dict, where) -> tuple:
    """(model config, TrainConfig) of the config dict ``d``; errors name ``where``."""
    unknown = [k for k in d if k not in ("model", "train")]
    if unknown:
        raise InputError(where, f"unknown top-level key '{unknown[0]}' (known: model, train, presets)")
    model = dict(d.get("model") or {})
    kernel = model.pop("kernel", None)  # every model's: the tensor-product kernel (models/_fast_tp.py)
    if kernel is not None and kernel not in KERNELS:
        raise InputError(where, f"model.kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    model_cfg = from_dict(spec.config_cls, model, where, prefix="model.")
    train_cfg = from_dict(TrainConfig, d.get("train") or {}, where, prefix="train.")
    return model_cfg, train_cfg, kernel


def build_model(spec: registry.ModelSpec, model_cfg, layout, dtype: str = "float32", seed: int | None = None,
                stage1_rec: dict | None = None, kernel: str | None = None):
    """``spec.build(model_cfg, layout)`` with torch's default dtype set to ``dtype`` and torch seeded (so the
    initial weights depend on the seed only). A model with a stage 1 (``spec.stage1``) gets the module of
    ``model_cfg.stage1`` as ``stage1=`` (models never read files), or, given ``stage1_rec`` (a
    :func:`stage1_record`), the module it describes without reading a file; the record is kept as
    ``model.stage1_record`` for the checkpoint. ``kernel`` (e3nn | fast; None: the process default,
    :func:`models._fast_tp.default_kernel`) picks how its tensor products are computed."""
    if seed is not None:
        seed_everything(seed)
    kernel = kernel or default_kernel()
    with default_dtype(torch_dtype(dtype)), building(kernel):
        extra, record = {}, None
        if spec.stage1 and getattr(model_cfg, "needs_stage1", True):
            # loading builds the stage-1 model, which reseeds torch with 0 (load_model): HarmoSE's own initial
            # weights have always been drawn after that
            extra["stage1"], record = load_stage1(model_cfg.stage1, layout, spec.stage1, dtype, stage1_rec)
        model = spec.build(model_cfg, layout, **extra)
    if record is not None:
        model.stage1_record = record
    set_kernel(model, kernel)
    return model.to(torch_dtype(dtype))


def split_indices(store, cfg) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(train indices, validation indices or None, description) of ``store`` under ``cfg`` (TrainConfig).

    ``cfg.split = NAME``: NAME:train and NAME:val (a subset named ``valid``/``validation`` also counts; without
    one, the training loss stands in). No split: DeepH-E3's seeded random ``1 − val_fraction`` / ``val_fraction``
    of the original structures (rotation-augmented copies follow their parent); ``val_fraction = 0`` or a store
    of one original structure trains and validates on all structures.
    """
    if cfg.split:
        name = cfg.split
        if ":" in name:
            raise InputError(store.path, f"train.split takes a split NAME (trains on NAME:train), got {name!r}")
        tr = select_split(store, f"{name}:train", flag="train.split")
        labels = store.meta.splits.get(name, ())
        val_name = next((v for v in ("val", "valid", "validation") if v in labels), None)
        va = select_split(store, f"{name}:{val_name}", flag="train.split") if val_name else None
        if va is not None and va.size == 0:
            va = None
        if tr.size == 0:
            raise InputError(store.path, f"split {name}:train is empty")
        return tr, va, f"{name}:train" + (f" / {name}:{val_name}" if va is not None else " (no val subset)")
    n = len(store)
    parent = store.array("structures/parent")[:]
    orig = np.flatnonzero(parent < 0)
    if n == 0:
        raise InputError(store.path, "the store holds no structures")
    if orig.size < 2 or cfg.val_fraction == 0:
        idx = np.arange(n, dtype=np.int64)
        return idx, idx, "all structures (validated on the training set)"
    perm = np.random.RandomState(cfg.seed % (1 << 32)).permutation(orig)
    n_val = min(max(1, int(round(cfg.val_fraction * orig.size))), orig.size - 1)
    val_orig = np.sort(perm[:n_val])
    is_val = np.isin(np.where(parent < 0, np.arange(n), parent), val_orig)
    return (np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64),
            f"random {1 - cfg.val_fraction:.2f}/{cfg.val_fraction:.2f} (seed {cfg.seed})")


def _check_store_for(spec, store, where) -> None:
    kind = store.kind
    if kind not in spec.kinds:
        raise InputError(where, f"model {spec.name!r} trains on {'/'.join(spec.kinds)} stores; this store holds "
                                f"{kind}s")
    if store.spinful and not spec.spinful:
        raise InputError(where, f"the store is spinful (SOC) but model {spec.name!r} is spinless")


def _device(device: str | None, local_rank: int = 0):
    if device in (None, "auto"):
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {device}", "not a device (cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(None, f"--device {device}: CUDA is not available here")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
    return dev


def _diff(a, b, prefix="") -> list[str]:
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
    if a != b:
        out.append(f"{prefix.rstrip('.')}: {a!r} → {b!r}")
    return out


# --- hambench train ---------------------------------------------------------------------------------------
def _resume_from(run_dir: Path, name: str, resume: bool) -> tuple[Checkpoint | None, Checkpoint | None]:
    """(last.pt, best.pt or None) of the run to continue, or (None, None) for a new run in an unused folder."""
    last = run_dir / "last.pt"
    if not resume:
        if last.exists() or (run_dir / "best.pt").exists():
            raise InputError(run_dir, "holds a run already (last.pt); pass --resume to continue it or choose "
                                      "another -o")
        return None, None
    if not last.is_file():
        raise InputError(run_dir, "--resume: no last.pt in this run folder")
    ck = Checkpoint.load(last)
    if ck.model["name"] != name:
        raise InputError(run_dir, f"--resume: the run trained model {ck.model['name']!r}, not {name!r}")
    best = Checkpoint.load(run_dir / "best.pt") if (run_dir / "best.pt").is_file() else None
    return ck, best


def _run_config(name, ck: Checkpoint | None, preset, config_file, sets, overrides) -> Resolved:
    """The run's configs: a resume without config options takes the checkpoint's own."""
    if ck is not None and preset is None and config_file is None and not sets:
        base = {"model": ck.model["config"], "train": dict(ck.train_config)}
        return resolve_config(name, None, None, (), overrides, base=base)
    return resolve_config(name, preset or "paper", config_file, sets, overrides)


def _check_resume(ck: Checkpoint, res: Resolved, checksum: str, run_dir: Path, data) -> None:
    """A resume continues the same config (but RESUME_MAY_CHANGE) on the same store, or stops with one line."""
    def kept(train: dict) -> dict:
        return {k: v for k, v in train.items() if k not in RESUME_MAY_CHANGE}

    diffs = _diff({"model": ck.model["config"], "train": kept(ck.train_config)},
                  {"model": res.as_dict()["model"], "train": kept(res.as_dict()["train"])})
    if diffs:
        raise InputError(run_dir, f"--resume with a different config ({'; '.join(diffs[:3])}); the run's config "
                                  f"is in {run_dir / 'config.json'} — start a new run folder to change it")
    if ck.meta["store"]["checksum"] != checksum:
        raise InputError(data, f"--resume on another store (content checksum differs from the run's "
                               f"{ck.meta['store']['path']})")


def _edge_rule(store, tr, ck: Checkpoint | None) -> str:
    """How ``predict --structures`` makes edges: ``complete`` when the training molecules held every atom pair
    (PySCF stores: new molecules get every pair too), else ``cutoff`` (:func:`edges_for`)."""
    if ck is not None and "edge_rule" in ck.meta:
        return ck.meta["edge_rule"]
    na = store.array("structures/natoms")[:][tr].astype(np.int64)
    ne = store.array("structures/nedges")[:][tr].astype(np.int64)
    return "complete" if store.kind == "molecule" and np.all(ne == na * na) else "cutoff"


def _run_meta(name, res: Resolved, layout, store, data, checksum, split, ck: Checkpoint | None) -> dict:
    """The facts every checkpoint of the run holds (model, layout, store, edge cut-offs and rule, command)."""
    tr, va, desc = split
    return {
        "model": {"name": name, "config": res.as_dict()["model"], "preset": res.preset},
        "layout": layout.to_dict(),
        "store": {"path": str(Path(data).resolve()), "checksum": checksum, "kind": store.kind,
                  "spinful": store.spinful, "store_version": store.meta.version,
                  "n_train": int(len(tr)), "n_val": int(0 if va is None else len(va)), "split": desc},
        "edge_cutoffs": ck.meta["edge_cutoffs"] if ck is not None else edge_cutoffs(store, tr),
        "edge_rule": _edge_rule(store, tr, ck),
        "dft": dict(store.meta.dft or {}),  # the basis: predict --structures computes S from it when Gaussian
        "command": " ".join(sys.argv),
    }


def _check_reach(name: str, model, layout, allow_partial: bool) -> list[str]:
    """The block types ``model`` cannot fill; refused (one line naming the first) unless ``allow_partial``."""
    gaps = unreachable_parts(model, layout)
    if gaps and not allow_partial:
        more = f" (and {len(gaps) - 1} more block types)" if len(gaps) > 1 else ""
        raise InputError(None, f"{name} cannot represent this store's blocks: {gaps[0]}{more}; raise the model's "
                               "feature degrees (a preset that fits) or pass --allow-partial to train anyway")
    return gaps


def _loader(store, indices, cfg: TrainConfig, shuffle: bool, augment: bool):
    rank, world, _ = dist_info()
    return make_loader(store, None, batch_size=cfg.batch_size, shuffle=shuffle, seed=cfg.seed,
                       augment_rotations=augment, rank=rank, world_size=world, num_workers=cfg.num_workers,
                       dtype=torch_dtype(cfg.dtype), blocks=("H", "T"), indices=indices)


def train_run(name: str, data, run_dir, preset: str | None = None, config_file=None, sets=(),
              overrides: dict | None = None, resume: bool = False, device: str | None = "auto",
              quiet: bool = True, log=None, allow_partial: bool = False) -> dict:
    """``hambench train``: train model ``name`` on the store ``data`` into ``run_dir``. Returns the summary.

    Refuses (one :class:`InputError` line, nothing written): an unknown model/preset/key, a store the model
    cannot take (kind, spin, a prediction store), a damaged store (missing or truncated shards, NaN/Inf, content
    other than sealed: :func:`~hambench.store.store_checksum`), an ``-o`` that is a file, an existing run without
    ``resume``, ``resume`` with another config or store, a model whose irreps cannot fill some block type of
    the store (:func:`models._reach.unreachable_parts`) unless ``allow_partial`` (the parts are then recorded in
    the checkpoints' ``meta["unreachable"]``; predictions and scores carry them).
    """
    run_dir = check_output(run_dir, folder=True, what="a run folder")
    rank, world, local_rank = dist_info()
    spec = registry.get(name)
    store = require_truth(open_store(data), "training data")
    _check_store_for(spec, store, data)
    ck, best_ck = _resume_from(run_dir, name, resume)
    res = _run_config(name, ck, preset, config_file, sets, overrides)
    cfg = res.train
    layout = store.layout
    checksum = store_checksum(store)
    if ck is not None:
        _check_resume(ck, res, checksum, run_dir, data)
    dev = _device(device, local_rank)
    tr, va, desc = split_indices(store, cfg)
    train_loader = _loader(store, tr, cfg, shuffle=True, augment=cfg.augment_rotations)
    val_loader = _loader(store, va, cfg, shuffle=False, augment=False) if va is not None else None
    meta = _run_meta(name, res, layout, store, data, checksum, (tr, va, desc), ck)
    model = build_model(res.spec, res.model, layout, cfg.dtype, cfg.seed, stage1_of(res.spec, ck, run_dir),
                        kernel=res.kernel)
    if getattr(model, "stage1_record", None) is not None:
        meta["stage1"] = model.stage1_record  # the checkpoint rebuilds stage 1 without its file
    meta["unreachable"] = _check_reach(name, model, layout, allow_partial or bool(ck and ck.meta.get("unreachable")))
    say = log or ((lambda s: print(s, file=sys.stderr, flush=True)) if rank == 0 else (lambda s: None))
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {**res.as_dict(), "model_name": name, "preset": res.preset,
                                             "store": meta["store"], "code": code_version()}, indent=2)
        say(f"train {name} ({res.preset or 'checkpoint'} config, {sum(p.numel() for p in model.parameters()):,} "
            f"parameters) on {data}: {desc}, {len(tr)} train / {0 if va is None else len(va)} val structures, "
            f"device {dev}, {cfg.dtype}" + (f", {world} processes" if world > 1 else "")
            + (", resuming" if ck is not None else ""))
    trainer = Trainer(model, cfg, train_loader, val_loader, run_dir, meta, device=dev, quiet=quiet, log=say)
    summary = trainer.fit(resume=ck, best=best_ck)
    summary["parameters"] = int(sum(p.numel() for p in model.parameters()))
    return summary


# --- checkpoints back to models -----------------------------------------------------------------------------
def load_model(checkpoint, device="cpu", dtype: str | None = None):
    """(model in eval mode, checkpoint dict, layout) from a ``.pt`` file or a run folder (best.pt first).

    A two-stage model (HarmoSE) is rebuilt from its checkpoint alone (the ``stage1`` record and the ``stage1.*``
    weights of its state): the stage-1 file it was trained from is never read."""
    ck = load_checkpoint(checkpoint, map_location="cpu")
    where = ck["path"]
    try:
        spec = registry.get(ck["model"]["name"])
        model_cfg = from_dict(spec.config_cls, ck["model"]["config"], where, prefix="model.")
        layout = BasisLayout.from_dict(ck["layout"])
    except InputError as e:
        raise InputError(where, f"checkpoint names a model this hambench cannot build: {e.problem}") from None
    except Exception as e:
        raise InputError(where, f"checkpoint metadata unreadable: {type(e).__name__}: {e}") from None
    dt = dtype or ck["train_config"].get("dtype", "float32")
    model = build_model(spec, model_cfg, layout, dt, seed=0, stage1_rec=stage1_of(spec, ck, where))
    try:
        model.load_state_dict(ck["state"])
    except Exception as e:
        msg = str(e).splitlines()[0][:200]
        raise InputError(where, f"checkpoint weights do not fit model {spec.name!r}: {msg}") from None
    model.to(torch.device(device))
    model.eval()
    return model, ck, layout


def _predict_batches(model, batches, device, dtype):
    """Yield (store index, flat H per structure as numpy, T or None) for every structure of the batches."""
    grad = bool(getattr(model, "inference_needs_grad", False))
    dt = torch_dtype(dtype)
    for batch in batches:
        b = batch.to(device, dt)
        with torch.set_grad_enabled(grad):
            out = model(b)
        H = out["H"].detach()
        T = out.get("T")
        ne = torch.bincount(b.edge_batch, minlength=b.num_structures).cpu().numpy()
        eptr = np.concatenate([[0], np.cumsum(ne)])
        hp = b.H_ptr.cpu().numpy()
        tp = b.T_ptr.cpu().numpy()
        Hn = H.cpu().numpy().astype(np.complex128 if H.is_complex() else np.float64)
        Tn = T.detach().cpu().numpy().astype(np.float64) if T is not None else None
        for s in range(b.num_structures):
            e0, e1 = int(eptr[s]), int(eptr[s + 1])
            yield (int(b.index[s]), Hn[hp[e0]:hp[e1]],
                   None if Tn is None else Tn[tp[e0]:tp[e1]], int(b.natoms[s]))


def predict_store(checkpoint, data, out, split: str | None = None, device="auto", batch_size: int = 8,
                  overwrite: bool = False, quiet: bool = True, dtype: str | None = None) -> dict:
    """``hambench predict CHECKPOINT --data STORE [--split NAME:SUBSET] -o preds.zarr``.

    Refuses a store whose species, shells or spin the checkpoint does not know (one line, nothing written).
    ``dtype`` (float32 | float64; None: the checkpoint's training dtype) is the precision of the forward. Returns {path, structures, seconds, structures_per_s, atoms_per_s}.
    """
    out = check_output(out, folder=True, what="the prediction store to write (NAME.zarr)")
    if out.exists() and not overwrite:
        raise InputError(out, "exists already; choose another path or pass --overwrite")
    model, ck, layout = load_model(checkpoint, "cpu", dtype)
    store = require_truth(open_store(data), "input for predict --data")
    _check_store_for(registry.get(ck["model"]["name"]), store, data)
    layout.check_compatible(store.layout, data)
    dev = _device(device)
    model.to(dev)
    dtype = dtype or ck["train_config"].get("dtype", "float32")
    idx = select_split(store, split)
    if idx.size == 0:
        raise InputError(data, f"split {split} selects no structures")
    loader = make_loader(store, None, batch_size=batch_size, shuffle=False, dtype=torch_dtype(dtype), blocks=(),
                         indices=idx)
    results: dict[int, tuple] = {}
    t0 = time.perf_counter()
    n_atoms = 0
    for k, H, T, na in _predict_batches(model, loader, dev, dtype):
        results[k] = (H, T)
        n_atoms += na
    dt = time.perf_counter() - t0
    has_T = all(v[1] is not None for v in results.values())
    order = sorted(results)
    meta = {"model": {"name": ck["model"]["name"], "checkpoint": str(Path(ck["path"]).resolve()),
                      "config": ck["model"]["config"], "step": ck["engine"]["step"],
                      "unreachable": list(ck.get("unreachable") or [])},
            "split": split, "timing": {"seconds": dt, "structures_per_s": len(order) / max(dt, 1e-9),
                                       "device": str(dev)}}
    write_predictions(store, order, (results[k][0] for k in order), out, meta,
                      T=(results[k][1] for k in order) if has_T else None, overwrite=overwrite)
    return {"path": str(out), "structures": len(order), "seconds": dt,
            "structures_per_s": len(order) / max(dt, 1e-9), "atoms_per_s": n_atoms / max(dt, 1e-9)}


# --- predict --structures ----------------------------------------------------------------------------------
def predict_structures(checkpoint, structures_file, out, device="auto", batch_size: int = 8,
                       overwrite: bool = False, edge_chunk: int = DEFAULT_EDGE_CHUNK, say=None,
                       dtype: str | None = None) -> dict:
    """``hambench predict CHECKPOINT --structures FILE -o preds.zarr``: blocks for structures without DFT.

    Edges: every atom pair when the training store held every pair of each molecule (PySCF stores:
    ``edge_rule = "complete"``), else the neighbour list with the checkpoint's per-element-pair cut-offs
    (:func:`edges_for`, the DFT codes' orbital cut-offs as the training data show them). Degenerate geometries
    (NaN/Inf coordinates, atoms closer than 0.1 Å, an atom with no neighbour within the cut-offs) are refused
    before anything is written (:func:`models._frames.check_geometry`). The output is a store (schema of :mod:`hambench.store._schema`) with the predicted ``blocks/H``, no overlap,
    and attrs ``hambench_predictions_version``, ``truth: null``, ``model``, ``structures_file``.

    Large structures: a DeepH-E3 is evaluated one structure at a time with its per-edge work in slices of
    ``edge_chunk`` edges (:mod:`hambench.models._chunked`: memory = its node/edge features twice + one slice);
    ``say(line)`` gets progress at least every 10 s and the throughput. S comes from the training data's
    Gaussian basis when it has one (:func:`_add_overlap`).
    """

    out = check_output(out, folder=True, what="the prediction store to write (NAME.zarr)")
    if out.exists() and not overwrite:
        raise InputError(out, "exists already; choose another path or pass --overwrite")
    model, ck, layout = load_model(checkpoint, "cpu", dtype)
    dev = _device(device)
    model.to(dev)
    dtype = dtype or ck["train_config"].get("dtype", "float32")
    frames = read_structures(structures_file)
    src_file = Path(structures_file)
    sha = file_sha256(src_file)
    r = StoreRange.from_structures(frame_structures(frames, layout, ck, src_file, sha), layout, overlap=False)
    t0 = time.perf_counter()
    preds = _predict_frames(model, r, layout, dev, dtype, batch_size, edge_chunk, say)
    dt = time.perf_counter() - t0
    bad = [k for k in range(len(r)) if not np.all(np.isfinite(preds[k]))]
    if bad:
        raise InputError(src_file, f"frame {bad[0]}: the model predicts NaN/Inf blocks for it (nothing written)")
    r.H = np.concatenate([preds[k] for k in range(len(r))])
    r.H_ptr = layout.block_ptr(*r.edge_Z())
    overlap = _add_overlap(r, layout, ck)
    _write_plain_predictions(r, layout, out, {
        "kind": ck["store"]["kind"],
        "hambench_predictions_version": 1,
        "truth": None,
        "structures_file": {"path": str(src_file.resolve()), "sha256": sha},
        "model": {"name": ck["model"]["name"], "checkpoint": str(Path(ck["path"]).resolve()),
                  "config": ck["model"]["config"], "step": ck["engine"]["step"],
                      "unreachable": list(ck.get("unreachable") or [])},
        "split": None,
        "overlap": overlap,
        "created_by": {"hambench": __version__, "command": " ".join(sys.argv)},
        "timing": {"seconds": dt, "structures_per_s": len(r) / max(dt, 1e-9), "device": str(dev)},
    })
    return {"path": str(out), "structures": len(r), "seconds": dt,
            "structures_per_s": len(r) / max(dt, 1e-9), "edges": int(r.src.size)}


def _predict_frames(model, r: StoreRange, layout, dev, dtype, batch_size: int, edge_chunk: int, say) -> dict:
    """{structure index: flat predicted H} of the frames ``r``: chunked one by one when the model allows it."""
    if not supports_chunking(model):
        preds = {}
        for a in range(0, len(r), batch_size):
            b = collate(r.take(np.arange(a, min(len(r), a + batch_size))), layout, dtype=torch_dtype(dtype))
            preds.update((k, H) for k, H, _, _ in _predict_batches(model, [b], dev, dtype))
        return preds

    def progress(what, done, total, seconds):
        if say is not None:
            say(f"  {what}: {100 * done / total:.0f} % of the edge work, {done / max(seconds, 1e-9):,.0f} "
                f"edge updates/s, {seconds:.0f} s")

    preds = {}
    for k in range(len(r)):
        b = collate(r.take(np.array([k])), layout, dtype=torch_dtype(dtype)).to(dev, torch_dtype(dtype))
        t0 = time.perf_counter()
        H = chunked_forward(model, b, edge_chunk, progress)
        preds[k] = H.cpu().numpy().astype(np.complex128 if H.is_complex() else np.float64)
        del H, b
        if say is not None:
            dt, na, ne = time.perf_counter() - t0, int(r.natoms[k]), int(r.nedges[k])
            say(f"  structure {k}: {na:,} atoms, {ne:,} edges in {dt:.1f} s ({na / dt:,.0f} atoms/s, "
                f"{ne / dt:,.0f} edges/s)")
    return preds


def _overlap_basis(ck) -> str | None:
    """The PySCF basis of the checkpoint's training data when its orbitals are Gaussians, else None. Checkpoints
    made before the ``dft`` record name it through their training store's attrs, when that store still exists."""
    dft = ck.get("dft")
    if dft is None:
        path = Path(str(ck["store"].get("path", "")))
        try:
            dft = open_store(path).meta.dft if path.is_dir() else None
        except (InputError, OSError):
            dft = None
    return dft_gaussian_basis(dft)


def _add_overlap(r: StoreRange, layout, ck) -> dict:
    """Give the predicted structures ``r`` their exact overlap S (per edge, from the Gaussian basis of the training
    data: :func:`hambench.basis.gaussian_overlap_blocks`); numerical orbitals get none. Returns the store's
    ``overlap`` attribute (how S was made, or why there is none)."""
    basis = _overlap_basis(ck)
    if basis is None:
        code = (ck.get("dft") or {}).get("code", "an unrecorded code")
        return {"source": None, "why": f"the model was trained on {code} data: numerical atomic orbitals have no "
                                       "closed-form overlap here (use HPRO, or a model trained on S)"}
    t0 = time.perf_counter()
    zs, zd = r.edge_Z()
    S = []
    for k in range(len(r)):
        a0, a1 = int(r.atom_ptr[k]), int(r.atom_ptr[k + 1])
        e0, e1 = int(r.edge_ptr[k]), int(r.edge_ptr[k + 1])
        S.append(gaussian_overlap_blocks(r.Z[a0:a1], r.pos[a0:a1], r.cell[k], r.src[e0:e1], r.dst[e0:e1],
                                         r.shift[e0:e1], layout, basis))
    r.S = np.concatenate(S) if S else np.zeros(0)
    r.S_ptr = layout.block_ptr(zs, zd, spinful=False)
    return {"source": "exact two-centre overlaps of the Gaussian basis (PySCF libcint), per edge", "basis": basis,
            "seconds": time.perf_counter() - t0}


def _write_plain_predictions(r: StoreRange, layout, out: Path, attrs: dict) -> None:
    """Write the structures ``r`` with their predicted H (no S, no T) as a store with ``attrs`` (atomically; the
    callers refuse an existing ``out`` unless ``overwrite``)."""
    counts = {"structures": len(r), "atoms": int(r.Z.size), "edges": int(r.src.size), "H": int(r.H.size),
              "S": 0 if r.S is None else int(r.S.size),
              "T": 0}
    present = sorted({int(z) for z in r.Z})
    full = {"spinful": layout.spinful, "species": {str(z): layout.species[z] for z in present}, "splits": {},
            **attrs}
    partial = partial_path(out)
    try:
        w = StoreWriter(partial, counts, full, [])
        w.append(r)
        w.close()
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_dir(partial, out)
