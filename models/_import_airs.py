"""Import a QHNet checkpoint of divelab/AIRS' QH9 code (``OpenDFT/QHBench/QH9``) as a hambench ``qhnet`` run.

AIRS' ``main.py`` saves ``torch.save({"state_dict": model.state_dict(), "eval": …, "batch_idx": …})`` of
``models.QHNet`` = ``ori_QHNet_with_bias.QHNet`` (float32); its ``test.py`` reads ``["state_dict"]``. Both that
dict and a bare state dict are accepted. The parameters map one to one onto :class:`hambench.models.qhnet.QHNet`
(same function, same e3nn parameterisation: the table :data:`_RULES`), except:

* **units**: AIRS predicts Hartree, hambench eV. The output is linear in the last Linear of the four expansion
  MLPs (``fc_ii``, ``fc_ii_bias``, ``fc_ij``, ``fc_ij_bias``: weights and biases of layer 2), so those are
  multiplied by 27.211386245988 eV/Ha — in float64: the whole imported state is float64 (the float32 weights
  exactly, the folded ones without a second rounding), and ``predict`` in float64 reproduces AIRS' function to
  rounding;
* **unused modules** AIRS builds but never calls (:data:`hambench.models.qhnet.AIRS_UNUSED_PARAMETERS`: layer 0's
  norm gate and its two Linears, each pair layer's ``tp_node_pair_2`` and ``linear_node_pair_2``, the Expansions'
  internal ``weights``) are read and dropped;
* **constants**: AIRS' Bernstein buffers (``cutoff``, ``logc``, ``n``, ``v``) are checked (the cut-off must equal
  ``max_radius``, their length ``radius_embed_dim``) and recomputed exactly by hambench; e3nn's own constant
  buffers (``output_mask``, the tensor products' ``_w3j_*``, empty weights) are ignored when present.

The hyper-parameters are QH9's (``QHNetConfig()``: hidden 128, bottleneck 32, 5 layers, cut-off 15 Å,
16 radial functions, 10 species); ``overrides`` sets any other field of :class:`~hambench.models.qhnet.
QHNetConfig` for a checkpoint of another size. The basis is QH9's def2-SVP (H: 2s1p, C/N/O/F: 3s2p1d), the
fixed 14-slot layout AIRS' ``Expansion`` is built for.

Refused with one :class:`~hambench.errors.InputError` line naming the key, before anything is written: a file
that is not a torch state dict, another architecture's file (a hambench checkpoint, a DeepH-E3 model, AIRS'
QHNet without bias), an unknown or a missing key, a shape that does not fit the configuration, a cut-off other
than the configuration's, an unknown override, and — when a store is given (``data``) — a store with species the
checkpoint does not know. The run folder holds ``best.pt`` and ``last.pt`` (step 0, the QH9 training recipe,
fresh optimiser state: ``train --resume`` fine-tunes it on ``data``) and ``config.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from hambench.atomic import check_output, partial_path, replace_dir, write_json
from hambench.basis import BasisLayout
from hambench.basis._conventions import HARTREE_EV
from hambench.config import to_dict
from hambench.errors import InputError
from hambench.store import edge_cutoffs, open_store, require_truth, store_checksum
from hambench.training import (Checkpoint, EngineState, Schedule, code_version, decay_total, make_optimizer,
                               rng_state, save_checkpoint)

from . import qhnet
from .run import resolve_config

__all__ = ["import_airs_qhnet", "airs_state_to_hambench", "QH9_SPECIES"]

#: QH9's def2-SVP shells (AIRS' orbital mask: Z ≤ 2 → 1s 2s 2p; heavier → 3s 2p 1d in 14 slots)
QH9_SPECIES = {1: [0, 0, 1], 6: [0, 0, 0, 1, 1, 2], 7: [0, 0, 0, 1, 1, 2], 8: [0, 0, 0, 1, 1, 2],
               9: [0, 0, 0, 1, 1, 2]}

_DROP = object()  # a module AIRS builds but never calls
_CHECK = object()  # a Bernstein constant, checked then recomputed

# (AIRS key pattern, hambench key template or _DROP/_CHECK); the first match wins; {0}, {1}… are the groups
_RULES = [
    (r"node_embedding\.weight", "embedding.weight"),
    (r"distance_expansion\._alpha", "rbf.a"),
    (r"distance_expansion\.(cutoff|logc|n|v)", _CHECK),
    (r"e3_gnn_layer\.0\.conv\.(norm_gate\..*|linear_node\..*|linear_node_pre\..*)", _DROP),
    (r"e3_gnn_layer\.(\d+)\.conv\.fc_node\.(.*)", "layers.{0}.fc_rbf.{1}"),
    (r"e3_gnn_layer\.(\d+)\.conv\.layer_l0\.(.*)", "layers.{0}.fc_s0.{1}"),
    (r"e3_gnn_layer\.(\d+)\.conv\.(linear_out|linear_node|linear_node_pre|norm_gate)\.(.*)", "layers.{0}.{1}.{2}"),
    (r"e3_gnn_node_layer\.(\d+)\.linear_node_([123])\.(.*)", "self_layers.{0}.linear_{1}.{2}"),
    (r"e3_gnn_node_layer\.(\d+)\.(tp|norm_gate|norm_gate_1|norm_gate_2)\.(.*)", "self_layers.{0}.{1}.{2}"),
    (r"e3_gnn_node_pair_layer\.(\d+)\.(tp_node_pair_2|linear_node_pair_2)\..*", _DROP),
    (r"e3_gnn_node_pair_layer\.(\d+)\.linear_node_pair_inner\.(.*)", "pair_layers.{0}.linear_inner.{1}"),
    (r"e3_gnn_node_pair_layer\.(\d+)\.linear_node_pair_n\.(.*)", "pair_layers.{0}.linear_n.{1}"),
    (r"e3_gnn_node_pair_layer\.(\d+)\.linear_node_pair\.(.*)", "pair_layers.{0}.linear.{1}"),
    (r"e3_gnn_node_pair_layer\.(\d+)\.tp_node_pair\.(.*)", "pair_layers.{0}.tp.{1}"),
    (r"e3_gnn_node_pair_layer\.(\d+)\.fc_node_pair\.(.*)", "pair_layers.{0}.fc_rbf.{1}"),
    (r"e3_gnn_node_pair_layer\.(\d+)\.fc\.(.*)", "pair_layers.{0}.fc_s0.{1}"),
    (r"e3_gnn_node_pair_layer\.(\d+)\.(norm_gate|norm_gate_pre)\.(.*)", "pair_layers.{0}.{1}.{2}"),
    (r"(output_ii|output_ij)\.(.*)", "{0}.{1}"),
    (r"expand_i[ij]\.hamiltonian\.weights", _DROP),
    (r"(fc_ii|fc_ij|fc_ii_bias|fc_ij_bias)\.hamiltonian\.([02]\.(?:weight|bias))", "{0}.{1}"),
]
_RULES = [(re.compile(p), t) for p, t in _RULES]

#: e3nn's constant buffers and AIRS' weight-less helper products (no information: ignored when present)
_E3NN_CONSTANT = re.compile(r"(.*\.)?(output_mask|_compiled_main\w*\.\w+|inner_product\.tp\.\w+|"
                            r"norm\.tp\.\w+|mul\.\w+)$")
#: the layers whose output is the Hamiltonian linearly: Hartree → eV folded in
_UNIT_FOLD = re.compile(r"(fc_ii|fc_ij|fc_ii_bias|fc_ij_bias)\.2\.(weight|bias)$")
_MARKER = "fc_ii_bias.hamiltonian.2.weight"  # the "with bias" expansion heads: present only in this architecture


def _read_state(path: Path) -> dict:
    """The state dict of an AIRS checkpoint file (``{"state_dict": …}`` or the bare dict), loaded safely."""
    if not path.is_file():
        raise InputError(path, "no such file (an AIRS QH9 checkpoint: torch.save({'state_dict': …}))")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise InputError(path, f"not a torch checkpoint readable as weights: {type(e).__name__}: {msg}") from None
    if isinstance(obj, dict) and obj.get("format") == "hambench-checkpoint":
        raise InputError(path, "is a hambench checkpoint already (use it directly), not an AIRS QH9 state dict")
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(path, "not a state dict (expected {'state_dict': {name: tensor}} as AIRS' QH9 main.py "
                               "saves, or the bare state dict)")
    if _MARKER not in sd:
        some = next(iter(sd))
        raise InputError(path, f"not AIRS' QH9 QHNet (ori_QHNet_with_bias): key '{_MARKER}' missing (the file's "
                               f"first key is '{some}'); another architecture's checkpoint?")
    return sd


def _target(key: str):
    for pat, tmpl in _RULES:
        m = pat.fullmatch(key)
        if m:
            return tmpl if tmpl is _DROP or tmpl is _CHECK else tmpl.format(*m.groups())
    return None


def _hint(key: str, shape) -> str:
    """Which hyper-parameter a shape reveals, for the refusal line."""
    if key == "node_embedding.weight" and len(shape) == 2:
        return f" (the file has num_species={shape[0]}, hidden_size={shape[1]})"
    if key.startswith("distance_expansion.") and len(shape) == 1:
        return f" (the file has radius_embed_dim={shape[0]})"
    return ""


def _check_bernstein(path, sd: dict, cfg) -> None:
    K = cfg.radius_embed_dim
    for name in ("logc", "n", "v"):
        t = sd.get(f"distance_expansion.{name}")
        if t is not None and tuple(t.shape) != (K,):
            raise InputError(path, f"key 'distance_expansion.{name}': shape {tuple(t.shape)}, the configuration "
                                   f"needs ({K},) (radius_embed_dim={K}){_hint('distance_expansion.' + name, t.shape)}")
    c = sd.get("distance_expansion.cutoff")
    if c is not None and (c.numel() != 1 or abs(float(c) - cfg.max_radius) > 1e-6 * max(1.0, cfg.max_radius)):
        raise InputError(path, f"key 'distance_expansion.cutoff': the file's cut-off is {c.flatten().tolist()} Å, "
                               f"the configuration's max_radius {cfg.max_radius} Å (override max_radius)")


def _precheck(path, sd: dict, cfg) -> None:
    """Refusals that need no model: a key no rule knows, the Bernstein constants, the embedding's shape."""
    for key, t in sd.items():
        if _target(key) is None and not (_E3NN_CONSTANT.fullmatch(key) or t.numel() == 0):
            raise InputError(path, f"key '{key}': not a parameter of AIRS' QH9 QHNet (unknown key)")
    _check_bernstein(path, sd, cfg)
    emb = sd.get("node_embedding.weight")
    want = (max(cfg.num_species, max(QH9_SPECIES) + 1), cfg.hidden_size)
    if emb is not None and tuple(emb.shape) != want:
        raise InputError(path, f"key 'node_embedding.weight': shape {tuple(emb.shape)} in the file, {want} for the "
                               f"configuration{_hint('node_embedding.weight', emb.shape)}; pass the checkpoint's "
                               "hyper-parameters as overrides")


def airs_state_to_hambench(sd: dict, model, path=None) -> dict:
    """hambench ``qhnet`` state (float64) from AIRS' state dict ``sd`` for ``model`` (a :class:`QHNet` of the
    intended configuration): renamed by :data:`_RULES`, unused modules dropped, the expansion heads' last layer
    × 27.211386245988 eV/Ha. Raises :class:`InputError` naming the first unknown, missing or misshapen key."""
    own = model.state_dict()
    out = {k: v.detach().to(torch.float64).clone() for k, v in own.items()}  # constants: hambench's own, exact
    filled = set()
    for key, t in sd.items():
        tgt = _target(key)
        if tgt is _DROP or tgt is _CHECK:
            continue
        if tgt is None or tgt not in own:
            if _E3NN_CONSTANT.fullmatch(key) or t.numel() == 0:
                continue
            raise InputError(path, f"key '{key}': unknown to AIRS' QHNet as this configuration builds it "
                                   f"({model.cfg.num_gnn_layers} layers, start_layer {model.cfg.start_layer}; "
                                   "override num_gnn_layers?)" if tgt is not None else
                             f"key '{key}': not a parameter of AIRS' QH9 QHNet (unknown key)")
        if tuple(t.shape) != tuple(own[tgt].shape):
            raise InputError(path, f"key '{key}': shape {tuple(t.shape)} in the file, {tuple(own[tgt].shape)} for "
                                   f"the configuration{_hint(key, t.shape)}; pass the checkpoint's "
                                   "hyper-parameters as overrides")
        v = t.detach().to(torch.float64).clone()
        if _UNIT_FOLD.fullmatch(tgt):
            v = v * HARTREE_EV
        out[tgt] = v
        filled.add(tgt)
    needed = [k for k, v in own.items() if k in dict(model.named_parameters()) and v.numel() > 0]
    missing = [k for k in needed if k not in filled]
    if missing:
        back = _airs_name(missing[0])
        raise InputError(path, f"key '{back}' missing from the file (hambench's {missing[0]}): a checkpoint of "
                               "another size or variant? (override num_gnn_layers / start_layer)")
    return out


def _airs_name(hkey: str) -> str:
    """AIRS' name of hambench key ``hkey`` (for messages; the rules read backwards)."""
    for pat, tmpl in _RULES:
        if isinstance(tmpl, str):
            rx = re.escape(tmpl).replace(r"\{0\}", "(.+?)").replace(r"\{1\}", "(.+?)").replace(r"\{2\}", "(.+)")
            m = re.fullmatch(rx, hkey)
            if m:
                src = pat.pattern
                for g in m.groups():
                    src = re.sub(r"\((?:[^()]|\([^()]*\))*\)", g.replace("\\", r"\\"), src, count=1)
                src = src.replace("\\.", ".")
                if _target(src) == hkey:  # a template can read other keys backwards too: keep the true one
                    return src
    return hkey


def _config(overrides: dict | None, dtype: str | None = None):
    """QH9's QHNetConfig with ``overrides`` (keys of QHNetConfig); an unknown key or a value AIRS cannot have
    is refused."""
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(qhnet.QHNetConfig)}
    for k in overrides:
        if k not in known:
            raise InputError(f"override {k}", f"not a qhnet hyper-parameter (known: {', '.join(sorted(known))})")
    if overrides.get("conv_s0_dst_twice", True) is not True:
        raise InputError("override conv_s0_dst_twice", "AIRS' QHNet feeds the receiving atom's scalars twice: an "
                                                       "AIRS checkpoint needs True")
    res = resolve_config("qhnet", "paper", sets=(), overrides=None,
                         base={"model": {**to_dict(qhnet.QHNetConfig()), **overrides},
                               "train": {**to_dict(resolve_config("qhnet", "paper").train),
                                         **({"dtype": dtype} if dtype else {})}})
    return res


def _store_facts(data, layout: BasisLayout, cfg) -> tuple[dict, dict, str]:
    """(store meta, edge cut-offs, edge rule) of the run: from the store ``data`` when given (its species must
    be the checkpoint's), else QH9's molecules: every pair of QH9's elements within ``max_radius``."""
    if data is None:
        cut = {f"{a}-{b}": float(cfg.max_radius) for a in QH9_SPECIES for b in QH9_SPECIES}
        return ({"path": None, "checksum": None, "kind": "molecule", "spinful": False, "store_version": None,
                 "n_train": 0, "n_val": 0, "split": "imported (AIRS QH9); no store given"}, cut, "complete")
    store = require_truth(open_store(data), "the store of an imported checkpoint")
    if store.kind != "molecule":
        raise InputError(data, f"qhnet (AIRS QH9) takes molecule stores; this store holds {store.kind}s")
    layout.check_compatible(store.layout, data)
    n = len(store)
    idx = np.arange(n, dtype=np.int64)
    na = store.array("structures/natoms")[:].astype(np.int64)
    ne = store.array("structures/nedges")[:].astype(np.int64)
    meta = {"path": str(Path(data).resolve()), "checksum": store_checksum(store), "kind": store.kind,
            "spinful": store.spinful, "store_version": store.meta.version, "n_train": n, "n_val": 0,
            "split": "imported (AIRS QH9)"}
    return meta, edge_cutoffs(store, idx), "complete" if np.all(ne == na * na) else "cutoff"


def import_airs_qhnet(path, run_dir, *, overrides: dict | None = None, data=None, dtype: str | None = None) -> None:
    """Write the hambench ``qhnet`` run folder ``run_dir`` from AIRS' QH9 checkpoint ``path``.

    Parameters
    ----------
    path : an AIRS QH9 checkpoint (``results_best.pt``: ``{"state_dict": …}``, or a bare state dict)
    run_dir : the run folder to create (must not hold a run)
    overrides : fields of :class:`~hambench.models.qhnet.QHNetConfig` where the checkpoint is not QH9's size
    data : optional store the run will be used with (its species must be QH9's; ``train --resume`` fine-tunes on
        it); without it the run predicts any QH9-element molecule but cannot be resumed
    dtype : ``float32`` | ``float64``: the run's precision (default QH9's float32); the weights stay float64

    Example
    -------
    ``import_airs_qhnet("results_best.pt", "runs/qh9", overrides={})`` then
    ``hambench predict runs/qh9 --data demo.zarr -o preds.zarr``.
    """
    path, run_dir = Path(path), check_output(run_dir, folder=True, what="the run folder to write")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise InputError(run_dir, "exists and is not empty; choose a new run folder")
    res = _config(overrides, dtype)
    cfg = res.model
    sd = _read_state(path)
    _precheck(path, sd, cfg)  # the cheap refusals first: building the model takes seconds at QH9's size
    layout = BasisLayout(QH9_SPECIES)
    store_meta, cutoffs, rule = _store_facts(data, layout, cfg)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            model = qhnet.build(cfg, layout)
        finally:
            torch.set_default_dtype(prev)
    state = airs_state_to_hambench(sd, model, path)
    model.load_state_dict(state)
    ck = _checkpoint(model, res, layout, state, store_meta, cutoffs, rule, path)
    _write_run(run_dir, ck, res, store_meta, path)


def _checkpoint(model, res, layout, state, store_meta, cutoffs, rule, path) -> Checkpoint:
    """Step 0 of a run from the imported weights, as the engine writes one (fresh optimiser and schedule)."""
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], res.train)
    sched = Schedule(opt, res.train, decay_total(res.train, None))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    meta = {"store": store_meta, "edge_cutoffs": cutoffs, "edge_rule": rule,
            "command": f"import-checkpoint airs-qhnet {path}",
            "imported_from": {"format": "airs-qhnet", "file": str(path.resolve()), "sha256": sha,
                              "unit_fold": f"fc_ii/fc_ij/fc_ii_bias/fc_ij_bias layer 2 x {HARTREE_EV} eV/Ha"}}
    return Checkpoint(model={"name": "qhnet", "config": res.as_dict()["model"], "preset": None},
                      layout=layout.to_dict(), meta=meta, train_config=to_dict(res.train), state=state,
                      optimizer=opt.state_dict(), schedule=sched.state_dict(),
                      engine=dataclasses.asdict(EngineState()), rng=rng_state(), code=code_version(), world_size=1,
                      saved_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _write_run(run_dir: Path, ck: Checkpoint, res, store_meta: dict, path: Path) -> None:
    """``best.pt``, ``last.pt`` and ``config.json`` staged beside ``run_dir`` and renamed into place whole."""
    staging = partial_path(run_dir)
    try:
        staging.mkdir(parents=True)
        data = ck.to_bytes()
        for name in ("best.pt", "last.pt"):
            save_checkpoint(staging / name, data)
        write_json(staging / "config.json", {**res.as_dict(), "model_name": "qhnet", "preset": None,
                                             "store": store_meta, "code": code_version(),
                                             "imported_from": ck.meta["imported_from"]}, indent=2)
        replace_dir(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
