"""``hambench import-checkpoint deephe3 DIR -o RUN --data STORE``: a DeepH-E3 training output folder
(Xiaoxun-Gong/DeepH-E3 @ f011d5f5) as a hambench run folder.

What DeepH-E3 writes (``kernel.py`` ``save_script``/``save_model``, ``utils.py`` ``RevertDecayLR.save_model``) and
what is read of it:

* ``best_model.pkl`` (else ``model.pkl``): ``{epoch, val_loss, state_dict, optimizer_state_dict,
  scheduler_state_dict}`` — the ``state_dict`` only, read with ``torch.load(weights_only=True)``;
* ``src/train.ini``: ``[basic] dtype`` and ``seed``, ``[network]`` (the architecture), ``[target]`` (only
  ``target_blocks_type = all`` over every element pair maps onto hambench's head), ``[train]`` and
  ``[hyperparameters]`` (learning rate, betas, batch size, epochs, minimum lr: the run's fine-tuning recipe);
* ``src/dataset_info.json``: the elements (``index_to_Z``, the order of the one-hots), their shells and spin.

The weights map one to one onto :class:`models.deephe3.DeepHE3` (same parameters, same shapes; the reference's
``lin_node`` head, unused for H, is dropped). Three re-orderings, all exact: the species one-hots (embedding,
node and edge self-connections) from ``index_to_Z``'s order to hambench's sorted order, the output channels of
``lin_edge`` from the reference's target order to the head's (matched by shell-pair label (l1, n1, l2, n2)).
Nothing is rescaled: the model's readout is the reference's plain ``wigner_3j`` (``_readout_scale``); the
weights stay in the file's precision (float32 for ``dtype = float``) and the run computes in ``--dtype``
(default: the ini's).

The run folder (``last.pt`` = ``best.pt`` at step 0, ``config.json``) is what ``hambench train`` would have
written before its first step on ``--data``: ``predict``, ``score``, ``equivariance`` and ``train --resume``
(fine-tuning on that store) take it. Refusals, one line naming the file or key, nothing written: a folder that
is not a DeepH-E3 output, a state dict of another architecture, an unknown or missing key, a shape mismatch,
options hambench's DeepH-E3 does not have (spherical Bessel basis, ignore_parity, targets other than ``all``),
elements beyond the store's or a store with other shells or elements.
"""

from __future__ import annotations

import configparser
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from e3nn import o3

from hambench.atomic import check_output, partial_path, replace_dir, write_json
from hambench.basis import BasisLayout
from hambench.basis import _so3 as so3
from hambench.config import from_dict, resolve
from hambench.errors import InputError
from hambench.store import open_store, require_truth, store_checksum
from hambench.training import TrainConfig, Trainer, code_version

from . import registry
from .deephe3 import DeepHE3Config
from .run import _check_store_for, _loader, _run_meta, build_model, split_indices

__all__ = ["import_deephe3", "read_deephe3_folder", "map_state_dict"]

# train_default.ini of the reference (the keys read here)
_DEFAULTS = {
    "basic": {"dtype": "float", "seed": "42"},
    "train": {"num_epoch": "3000", "batch_size": "1", "min_lr": "3e-5"},
    "hyperparameters": {"learning_rate": "0.002", "adam_betas": "(0.9, 0.999)"},
    "target": {"target": "hamiltonian", "target_blocks_type": "all", "selected_element_pairs": "",
               "convert_net_out": "False"},
    "network": {"cutoff_radius": "7.2", "only_ij": "False", "spherical_harmonics_lmax": "4",
                "spherical_basis_irreps": "", "irreps_embed": "64x0e", "irreps_mid": "64x0e+32x1o+16x2e+8x3o+8x4e",
                "num_blocks": "3", "ignore_parity": "False", "irreps_embed_node": "", "irreps_edge_init": "",
                "irreps_mid_node": "", "irreps_post_node": "", "irreps_out_node": "", "irreps_mid_edge": "",
                "irreps_post_edge": "", "out_irreps": ""},
}
# the reference's fixed sizes (model.py: Net(num_basis=128), EquiConv's 64-wide MLP, edge Gaussians 0..6 Å)
_FIXED = {"num_basis": 128, "radial_hidden": 64, "edge_init_stop": 6.0, "layer_norm": True, "symmetrize": False}


# --- the folder ---------------------------------------------------------------------------------------------------
def read_deephe3_folder(path) -> dict:
    """{state, ini, info, files} of a DeepH-E3 training output folder; one InputError line otherwise."""
    d = Path(path)
    if not d.is_dir():
        raise InputError(d, "not a DeepH-E3 training output folder (give the folder holding best_model.pkl and src/)")
    ini_path, info_path = d / "src" / "train.ini", d / "src" / "dataset_info.json"
    pkl = next((d / n for n in ("best_model.pkl", "model.pkl") if (d / n).is_file()), None)
    for need, what in ((pkl, "best_model.pkl or model.pkl"), (ini_path, "src/train.ini"),
                       (info_path, "src/dataset_info.json")):
        if need is None or not Path(need).is_file():
            raise InputError(d, f"not a DeepH-E3 training output folder: no {what}")
    try:
        obj = torch.load(pkl, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise InputError(pkl, f"not a readable DeepH-E3 checkpoint: {type(e).__name__}: {msg}") from None
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(pkl, "not a DeepH-E3 checkpoint: no 'state_dict' of tensors (DeepH-E3 saves "
                              "{epoch, val_loss, state_dict, ...})")
    ini = configparser.ConfigParser(inline_comment_prefixes=(";",))
    ini.read_dict(_DEFAULTS)
    try:
        ini.read(ini_path)
    except configparser.Error as e:
        raise InputError(ini_path, f"not a readable config: {str(e).splitlines()[0]}") from None
    try:
        info = json.loads(info_path.read_text())
        info = {"spinful": bool(info["spinful"]), "index_to_Z": [int(z) for z in info["index_to_Z"]],
                "orbital_types": [[int(l) for l in ls] for ls in info["orbital_types"]]}
    except Exception as e:
        raise InputError(info_path, f"not DeepH-E3's dataset_info.json ({type(e).__name__}: {e})") from None
    if len(info["orbital_types"]) != len(info["index_to_Z"]):
        raise InputError(info_path, "index_to_Z and orbital_types differ in length")
    return {"state": state, "ini": ini, "info": info, "files": {"state": pkl, "ini": ini_path, "info": info_path}}


def _ini_get(ini, where, section, key, kind=str):
    raw = ini.get(section, key).strip()
    try:
        if kind is bool:
            return ini.getboolean(section, key)
        return kind(raw)
    except ValueError:
        raise InputError(where, f"[{section}] {key} = {raw!r} is not a {kind.__name__}") from None


def _model_config(ini, where) -> DeepHE3Config:
    """hambench's DeepH-E3 config of a reference ``train.ini`` (refusing what hambench's model lacks)."""
    g = lambda key, kind=str: _ini_get(ini, where, "network", key, kind)  # noqa: E731
    if g("spherical_basis_irreps"):
        raise InputError(where, "[network] spherical_basis_irreps: the spherical-Bessel edge basis is not in "
                                "hambench's DeepH-E3 (spherical harmonics only)")
    if g("ignore_parity", bool):
        raise InputError(where, "[network] ignore_parity = True is not in hambench's DeepH-E3")
    if g("out_irreps"):
        raise InputError(where, "[network] out_irreps set by hand: hambench derives the output irreps from the shells")
    embed_n, embed_e = g("irreps_embed_node") or g("irreps_embed"), g("irreps_edge_init") or g("irreps_embed")
    mid_n, mid_e = g("irreps_mid_node") or g("irreps_mid"), g("irreps_mid_edge") or g("irreps_mid")
    for a, b, what in ((embed_n, embed_e, "irreps_embed_node and irreps_edge_init"),
                       (mid_n, mid_e, "irreps_mid_node and irreps_mid_edge")):
        if o3.Irreps(a) != o3.Irreps(b):
            raise InputError(where, f"[network] {what} differ ({a} / {b}): hambench's DeepH-E3 has one of each")
    t = {k: _ini_get(ini, where, "target", k) for k in ("target", "target_blocks_type", "selected_element_pairs")}
    if t["target"] != "hamiltonian" or not t["target_blocks_type"].lower().startswith("a") or \
            t["selected_element_pairs"]:
        raise InputError(where, "[target]: only target = hamiltonian, target_blocks_type = all over every element "
                                "pair maps onto hambench's output head")
    try:
        return DeepHE3Config(irreps_embed=str(o3.Irreps(embed_n)), irreps_mid=str(o3.Irreps(mid_n)),
                             irreps_post_node=str(o3.Irreps(g("irreps_post_node"))) if g("irreps_post_node") else None,
                             irreps_post_edge=str(o3.Irreps(g("irreps_post_edge"))) if g("irreps_post_edge") else None,
                             num_blocks=g("num_blocks", int), lmax=g("spherical_harmonics_lmax", int),
                             cutoff_radius=g("cutoff_radius", float), **_FIXED)
    except (ValueError, AssertionError) as e:
        raise InputError(where, f"[network]: {e}") from None


def _train_overrides(ini, where, dtype: str | None) -> dict:
    betas = _ini_get(ini, where, "hyperparameters", "adam_betas").strip("()[] ").split(",")
    try:
        betas = [float(b) for b in betas if b.strip()]
    except ValueError:
        raise InputError(where, f"[hyperparameters] Adam_betas = {ini.get('hyperparameters', 'adam_betas')!r}") from None
    file_dtype = {"float": "float32", "double": "float64"}.get(_ini_get(ini, where, "basic", "dtype"))
    if file_dtype is None:
        raise InputError(where, f"[basic] dtype = {ini.get('basic', 'dtype')!r} (DeepH-E3 takes float or double)")
    return {"lr": _ini_get(ini, where, "hyperparameters", "learning_rate", float), "betas": betas,
            "batch_size": _ini_get(ini, where, "train", "batch_size", int),
            "max_epochs": _ini_get(ini, where, "train", "num_epoch", int),
            "min_lr": _ini_get(ini, where, "train", "min_lr", float),
            "seed": _ini_get(ini, where, "basic", "seed", int), "dtype": dtype or file_dtype}


# --- the layout -------------------------------------------------------------------------------------------------
def _check_layout(info: dict, store, where_info, data) -> None:
    """The checkpoint's elements, shells and spin must be the store's."""
    species = dict(zip(info["index_to_Z"], info["orbital_types"]))
    theirs = {int(z): [int(l) for l in ls] for z, ls in store.layout.species.items()}
    beyond = sorted(set(species) - set(theirs))
    if beyond:
        raise InputError(where_info, f"elements Z={beyond} are beyond the store's (Z={sorted(theirs)}): the "
                                     f"checkpoint cannot be placed on {data}")
    missing = sorted(set(theirs) - set(species))
    if missing:
        raise InputError(data, f"the store has elements Z={missing} the checkpoint was not trained on "
                               f"(DeepH-E3's one-hots and outputs are sized by its elements Z={sorted(species)})")
    for z, ls in species.items():
        if theirs[z] != ls:
            raise InputError(where_info, f"Z={z} has shells {ls} in the checkpoint, {theirs[z]} in {data}")
    if bool(info["spinful"]) != bool(store.spinful):
        raise InputError(where_info, f"the checkpoint is {'spinful' if info['spinful'] else 'spinless'}, "
                                     f"the store is not")


# --- the weights ------------------------------------------------------------------------------------------------
def _linear_blocks(lin: o3.Linear, w: torch.Tensor) -> dict:
    """{(i_in, i_out): (mul_in, mul_out) block} of an e3nn Linear's flat weight."""
    out, k = {}, 0
    for ins in lin.instructions:
        if ins.i_in == -1:
            continue
        n = int(np.prod(ins.path_shape))
        out[(ins.i_in, ins.i_out)] = w[k:k + n].reshape(ins.path_shape)
        k += n
    return out


def _map_lin_edge(model, state: dict, labels_ref: list) -> None:
    """``lin_edge`` weights and biases from the reference's target order to the head's (in place in ``state``)."""
    lin = model.lin_edge
    ir_out = lin.irreps_out
    # output irreps entry of the reference -> the head's entry: per target, its entries in the same order
    head_start, k = {}, 0
    for t in model.head.targets:
        head_start[t] = k
        k += sum(1 for _ in _entries_of(model, t))
    per_t = k
    ref_to_head, k = {}, 0
    halves = 2 if model.spinful else 1
    for h in range(halves):
        for t in labels_ref:
            for j, _ in enumerate(_entries_of(model, t)):
                ref_to_head[k] = h * per_t + head_start[t] + j
                k += 1
    blocks = _linear_blocks(lin, state["lin_edge.weight"])
    head_blocks = {(i, ref_to_head[o]): b for (i, o), b in blocks.items()}
    w = [head_blocks[(ins.i_in, ins.i_out)].reshape(-1) for ins in lin.instructions if ins.i_in != -1]
    state["lin_edge.weight"] = torch.cat(w)
    if "lin_edge.bias" in state:
        scalar = o3.Irrep("0e")
        ref_start, s = {}, 0
        for r in range(len(ir_out)):  # the reference's bias layout: its 0e entries in its own order
            if ir_out[ref_to_head[r]].ir == scalar:
                ref_start[r] = s
                s += ir_out[ref_to_head[r]].mul
        inv = {v: r for r, v in ref_to_head.items()}
        ref_bias = state["lin_edge.bias"]
        parts = [ref_bias[ref_start[inv[o]]:ref_start[inv[o]] + ir_out[o].mul]
                 for o in range(len(ir_out)) if ir_out[o].ir == scalar]
        state["lin_edge.bias"] = torch.cat(parts) if parts else ref_bias


def _entries_of(model, t):
    """The irreps entries (one per L) of target ``t`` in the head, in order."""
    l1, _, l2, _ = t
    Ls = so3.cg_basis(l1, l2)[1]
    yield from Ls
    if model.spinful:
        for L in Ls:
            yield from so3.cg_basis(L, 1)[1]


def _ref_labels(model, info: dict, where) -> list:
    """The reference's targets, in its order, as the head's shell-pair labels (l1, n1, l2, n2).

    ``orbital_analysis`` (target_blocks_type = all) walks element pairs in index_to_Z order, then shell pairs, and
    groups the blocks by (l1, i1, l2, i2) with i = shell index − the index of the element's first shell of that l;
    hambench groups by n = the count of earlier shells of that l. Both partitions must be the same."""
    ref_key, ham_key = {}, {}
    for z, ls in zip(info["index_to_Z"], info["orbital_types"]):
        seen: dict[int, int] = {}
        for p, l in enumerate(ls):
            ref_key[(z, p)] = (l, p - ls.index(l))
            ham_key[(z, p)] = (l, seen.get(l, 0))
            seen[l] = seen.get(l, 0) + 1
    order, members = [], {}
    for zi, li in zip(info["index_to_Z"], info["orbital_types"]):
        for zj, lj in zip(info["index_to_Z"], info["orbital_types"]):
            for p in range(len(li)):
                for q in range(len(lj)):
                    k = ref_key[(zi, p)] + ref_key[(zj, q)]
                    if k not in members:
                        order.append(k)
                        members[k] = set()
                    members[k].add(ham_key[(zi, p)] + ham_key[(zj, q)])
    labels = []
    for k in order:
        if len(members[k]) != 1:
            raise InputError(where, "the checkpoint groups shell pairs into output targets differently from "
                                    "hambench (shells of one l are not contiguous)")
        labels.append(next(iter(members[k])))
    if len(set(labels)) != len(labels) or sorted(labels) != sorted(model.head.targets):
        raise InputError(where, "the checkpoint's output targets are not hambench's for these shells")
    return labels


def _species_perm(info: dict, layout) -> list[int]:
    """perm[k] = the reference's species index of hambench's species k (layout order)."""
    return [info["index_to_Z"].index(int(z)) for z in layout.elements]


def _permute_species(model, state: dict, perm: list[int]) -> None:
    """One-hot inputs of the embedding and the self-connections from index_to_Z's order to the layout's."""
    ns = len(perm)
    if perm == list(range(ns)):
        return
    w = state["embedding.weight"].reshape(ns, -1)
    state["embedding.weight"] = w[perm].reshape(-1)
    pair_perm = [perm[a] * ns + perm[b] for a in range(ns) for b in range(ns)]
    for key in [k for k in state if k.endswith(".sc.weight") and "skip" not in k]:
        mod = model.get_submodule(_KEY_MAP(key).rsplit(".", 1)[0])
        pp = perm if mod.irreps_in2.num_irreps == ns else pair_perm
        parts, k = [], 0
        for ins in mod.instructions:
            n = int(np.prod(ins.path_shape))
            blk = state[key][k:k + n].reshape(ins.path_shape)  # (mul1, n_onehot, mul_out), 'uvw'
            parts.append(blk[:, pp].reshape(-1))
            k += n
        state[key] = torch.cat(parts)


def _KEY_MAP(key: str) -> str:
    """The hambench name of a reference state-dict key (unknown keys come back unchanged)."""
    rules = (("embedding.", "embed."), ("node_update_blocks.", "node_blocks."),
             ("edge_update_blocks.", "edge_blocks."), (".conv.tp.weights1.", ".conv.tp.w1."),
             (".conv.tp.weights2.", ".conv.tp.w2."), (".skip_connect.sc.", ".skip."))
    for a, b in rules:
        key = key.replace(a, b)
    return key


_CONSTANTS = {"basis.offsets": "radial.offsets", "basis.width": "radial.widths",
              "distance_expansion.offsets": "edge_init.offsets", "distance_expansion.width": "edge_init.widths"}


def _is_e3nn_buffer(key: str) -> bool:
    """e3nn's constant buffers in a reference state dict (masks, 3j symbols, the empty weight of a product
    whose weights come from outside): rebuilt by hambench from the irreps, never read."""
    return (key.endswith(".output_mask") or "._compiled_main" in key or key.endswith(".conv.tp.tp.weight")
            or key.endswith(".nonlin.mul.weight"))


def map_state_dict(model, state: dict, info: dict, layout, where) -> dict:
    """hambench's state dict of ``model`` from a reference ``state_dict``; one InputError line naming the first
    unknown, missing or misshapen key (or a Gaussian basis other than the config's)."""
    if "embedding.weight" not in state or not any(k.startswith("node_update_blocks.") for k in state):
        raise InputError(where, f"not a DeepH-E3 state dict (no embedding.weight / node_update_blocks.*; first key "
                                f"{next(iter(state), None)!r})")
    own = dict(model.named_parameters())
    full = model.state_dict()
    params, names = {}, {}
    for k, v in state.items():
        if k.startswith("lin_node.") or _is_e3nn_buffer(k):
            continue
        if k in _CONSTANTS:
            mine = full[_CONSTANTS[k]]
            if v.shape != mine.shape or not torch.allclose(v.double(), mine.double(), rtol=1e-6, atol=1e-6):
                raise InputError(where, f"key {k!r} (fixed Gaussian basis) differs from this config's "
                                        f"(cutoff_radius / irreps_embed in train.ini?)")
            continue
        if v.numel() == 0 and _KEY_MAP(k) not in own:  # e3nn's empty bias of a Linear without biases
            continue
        names[k] = _KEY_MAP(k)
        if names[k] not in own:
            raise InputError(where, f"unknown key {k!r} (not in the DeepH-E3 that src/train.ini describes)")
        params[k] = v
    covered = set(names.values())
    missing = [n for n in own if n not in covered]
    if missing:
        raise InputError(where, f"missing key {_ref_name(missing[0])!r} (hambench's {missing[0]})")
    for k, v in params.items():
        if tuple(v.shape) != tuple(own[names[k]].shape):
            raise InputError(where, f"key {k!r} has shape {tuple(v.shape)}, this config needs "
                                    f"{tuple(own[names[k]].shape)} (network section of train.ini?)")
    _permute_species(model, params, _species_perm(info, layout))
    _map_lin_edge(model, params, _ref_labels(model, info, where))
    full.update({names[k]: v for k, v in params.items()})
    return full


def _ref_name(name: str) -> str:
    for a, b in (("embed.", "embedding."), ("node_blocks.", "node_update_blocks."),
                 ("edge_blocks.", "edge_update_blocks."), (".conv.tp.w1.", ".conv.tp.weights1."),
                 (".conv.tp.w2.", ".conv.tp.weights2."), (".skip.", ".skip_connect.sc.")):
        name = name.replace(a, b)
    return name


# --- the run folder ---------------------------------------------------------------------------------------------
def import_deephe3(path, run_dir, *, data, dtype: str | None = None) -> dict:
    """Write the hambench run folder ``run_dir`` of the DeepH-E3 output folder ``path`` for the store ``data``.
    Returns {run_dir, parameters, dtype, source}. Nothing is written unless everything maps."""
    run_dir = check_output(run_dir, folder=True, what="the run folder to write")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise InputError(run_dir, "-o: exists and is not empty; choose a new run folder")
    if data is None:
        raise InputError(None, "--data STORE is needed: the run is placed on a store (its elements, edges and "
                               "checksum), as hambench train does")
    src = read_deephe3_folder(path)
    ini_where, info = src["files"]["ini"], src["info"]
    spec = registry.get("deephe3")
    model_cfg = _model_config(src["ini"], ini_where)
    train_over = _train_overrides(src["ini"], ini_where, dtype)
    d = resolve(spec.config_file, "paper")
    cfg = from_dict(TrainConfig, {**d["train"], **train_over}, ini_where, prefix="train.")
    species = dict(zip(info["index_to_Z"], info["orbital_types"]))
    if len(species) != len(info["index_to_Z"]):
        raise InputError(src["files"]["info"], "index_to_Z lists an element twice")
    layout = BasisLayout(species, info["spinful"])
    store = require_truth(open_store(data), "the store to place the imported run on")
    _check_store_for(spec, store, data)
    _check_layout(info, store, src["files"]["info"], data)
    model = build_model(spec, model_cfg, layout, "float64", seed=0)
    mapped = map_state_dict(model, src["state"], info, layout, src["files"]["state"])
    model.load_state_dict(mapped)
    return _write_run(model, spec, model_cfg, cfg, layout, store, data, run_dir, src)


def _write_run(model, spec, model_cfg, cfg, layout, store, data, run_dir: Path, src) -> dict:
    from .run import Resolved

    res = Resolved(spec, model_cfg, cfg, "paper")
    checksum = store_checksum(store)
    tr, va, desc = split_indices(store, cfg)
    meta = _run_meta("deephe3", res, layout, store, data, checksum, (tr, va, desc), None)
    meta["command"] = f"hambench import-checkpoint deephe3 {src['files']['state'].parent}"
    meta["imported_from"] = {"format": "deephe3", "path": str(Path(src["files"]["state"]).resolve().parent),
                             "reference": "Xiaoxun-Gong/DeepH-E3 f011d5f5 (Net; lin_node dropped)"}
    staging = partial_path(run_dir)
    try:
        staging.mkdir(parents=True)
        train_loader = _loader(store, tr, cfg, shuffle=True, augment=cfg.augment_rotations)
        trainer = Trainer(model, cfg, train_loader, None, staging, meta, device="cpu", quiet=True,
                          log=lambda s: None)
        ck = trainer.checkpoint()
        ck.save(staging / "last.pt")
        ck.save(staging / "best.pt")
        write_json(staging / "config.json", {**res.as_dict(), "model_name": "deephe3", "preset": "paper",
                                             "store": meta["store"], "code": code_version(),
                                             "imported_from": meta["imported_from"]}, indent=2)
        replace_dir(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"run_dir": str(run_dir), "parameters": int(sum(p.numel() for p in model.parameters())),
            "dtype": cfg.dtype, "source": str(src["files"]["state"])}
