"""Reference fixture for ``hambench import-checkpoint deephe3``: DeepH-E3's own model, random weights, its own
checkpoint folder and its own float64 outputs on the real MoTe2 crystal.

Given a local clone of Xiaoxun-Gong/DeepH-E3 (``--ref PATH``; nothing of it is copied into hambench), this script

1. loads the reference's ``deephe3.model`` / ``deephe3.e3modules`` / ``deephe3.utils`` / ``deephe3.parse_configs``
   as they are, with three small shims installed first (the only pieces of torch_scatter / torch_geometric the
   model code touches, none installed here): ``torch_scatter.scatter`` (sum/mean over an index),
   ``torch_geometric.utils.degree`` (a bincount) and ``torch_geometric.nn.models.dimenet.BesselBasisLayer``
   (imported by model.py, never used). The package's ``__init__`` (data loading: pymatgen, pathos) is skipped;
2. parses a small ``train.ini`` with the reference's own ``TrainConfig`` and sets its targets from MoTe2's
   orbitals (``set_target``: target_blocks_type = all), builds ``Net(...)`` exactly as the reference's
   ``DeepHE3Kernel.save_model`` writes ``build_model.py``, in float32 (``dtype = float``, DeepH-E3's default),
   with seeded random weights (the zero-initialised biases and unit layer-norm weights are drawn too, so every
   key is exercised);
3. writes a training-output folder as DeepH-E3 does: ``best_model.pkl`` ({epoch, val_loss, state_dict,
   optimizer_state_dict, scheduler_state_dict}) and ``src/`` with ``train.ini``, ``build_model.py``,
   ``dataset_info.json`` and ``target_blocks.json`` (not the copy of the source code the trainer also keeps);
4. rebuilds the same net under a float64 default (float64 3j constants), loads those weights (the parameters
   only: the file's e3nn buffers were made in float32), runs it on the
   MoTe2 structure's DFT edges (edge_attr = [|r|, r], r = pos_j + R·cell − pos_i, as ``graph.py`` makes it),
   turns its output into blocks with the reference's ``e3TensorDecomp.get_H`` (OpenMX order) and then into
   hambench's orbital order with the reference's ``Rotate.openmx2wiki_H_full``; saves them per edge key
   (i, j, R) in ``ref_outputs.npz``;
5. the spinful readout alone: the reference's ``e3TensorDecomp.get_H`` (SOC) on random outputs for one element
   with shells s, s, p, d → ``readout_soc.npz`` (complex blocks in hambench's order);
6. prints the reference's parameter count at the paper config on MoTe2 (``train_default.ini``'s network).

Run (from the repository root, a clone of the reference in /tmp/deephe3_ref_clone):
    .venv/bin/python benchmarks/ref_deephe3_fixture.py --ref /tmp/deephe3_ref_clone --out tests/data/deephe3_ref
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

SMALL_NETWORK = """[basic]
device = cpu
dtype = float
save_dir = {save_dir}
seed = {seed}

[network]
cutoff_radius = 7.2
spherical_harmonics_lmax = 2
irreps_embed = 8x0e
irreps_mid = 8x0e+4x1o+2x2e
num_blocks = 2
"""


# --- shims for what the reference imports but this environment lacks ------------------------------------------
def _scatter(src, index, dim=0, dim_size=None, reduce="add"):
    assert dim == 0
    n = int(index.max()) + 1 if dim_size is None else int(dim_size)
    out = torch.zeros((n, *src.shape[1:]), dtype=src.dtype, device=src.device).index_add_(0, index, src)
    if reduce in ("add", "sum"):
        return out
    if reduce == "mean":
        cnt = torch.bincount(index, minlength=n).clamp(min=1).to(src.real.dtype if src.is_complex() else src.dtype)
        return out / cnt.view(-1, *([1] * (src.dim() - 1)))
    raise NotImplementedError(reduce)


def _degree(index, num_nodes=None, dtype=None):
    n = int(index.max()) + 1 if num_nodes is None else int(num_nodes)
    return torch.bincount(index, minlength=n).to(dtype or torch.long)


def _install_shims() -> None:
    ts = types.ModuleType("torch_scatter")
    ts.scatter = _scatter
    tg = types.ModuleType("torch_geometric")
    tgu = types.ModuleType("torch_geometric.utils")
    tgu.degree = _degree
    tgn = types.ModuleType("torch_geometric.nn")
    tgm = types.ModuleType("torch_geometric.nn.models")
    tgd = types.ModuleType("torch_geometric.nn.models.dimenet")

    class BesselBasisLayer(torch.nn.Module):  # imported by model.py, never used
        pass

    tgd.BesselBasisLayer = BesselBasisLayer
    tg.utils, tg.nn, tgn.models, tgm.dimenet = tgu, tgn, tgm, tgd
    sys.modules.update({"torch_scatter": ts, "torch_geometric": tg, "torch_geometric.utils": tgu,
                        "torch_geometric.nn": tgn, "torch_geometric.nn.models": tgm,
                        "torch_geometric.nn.models.dimenet": tgd})


def load_reference(ref: Path) -> dict:
    """The reference's modules (its package ``__init__`` skipped), keyed by name."""
    _install_shims()
    pkg = types.ModuleType("deephe3")
    pkg.__path__ = [str(ref / "deephe3")]
    sys.modules["deephe3"] = pkg
    return {name: importlib.import_module(f"deephe3.{name}") for name in ("utils", "e3modules", "model",
                                                                            "parse_configs")}


def commit_of(ref: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ref, capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"


# --- the reference's network, as its kernel builds it ----------------------------------------------------------
def net_kwargs(cfg, num_species: int) -> dict:
    """The keyword arguments ``DeepHE3Kernel.save_model`` writes into ``build_model.py``."""
    return dict(num_species=num_species, irreps_embed_node=str(cfg.irreps_embed_node),
                irreps_edge_init=str(cfg.irreps_edge_init), irreps_sh=str(cfg.irreps_sh),
                irreps_mid_node=str(cfg.irreps_mid_node), irreps_post_node=str(cfg.irreps_post_node),
                irreps_out_node=str(cfg.irreps_out_node), irreps_mid_edge=str(cfg.irreps_mid_edge),
                irreps_post_edge=str(cfg.irreps_post_edge), irreps_out_edge=str(cfg.net_out_irreps),
                num_block=cfg.num_blocks, r_max=cfg.cutoff_radius, use_sc=True, no_parity=cfg.no_parity,
                use_sbf=cfg.use_sbf, only_ij=cfg.only_ij, if_sort_irreps=False)


def build_model_py(kw: dict) -> str:
    lines = ["from deephe3_1 import Net", "net = Net("]
    for k, v in kw.items():
        lines.append(f"    {k}='{v}'," if isinstance(v, str) else f"    {k}={v},")
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines + [")", ""])


def train_config(ref_mods, ini: Path, index_to_Z, orbital_types):
    cfg = ref_mods["parse_configs"].TrainConfig(str(ini))
    cfg.set_target(orbital_types, torch.tensor(index_to_Z), False, None)
    return cfg


# --- MoTe2 -------------------------------------------------------------------------------------------------------
def mote2(realdata: Path):
    from hambench.basis import BasisLayout
    from hambench.pipelines.deeph_format import read_new_folder
    from hambench.training._data import batch_from_structures, edge_vectors

    s = read_new_folder(realdata)
    layout = BasisLayout(s.species, s.spinful)
    b = batch_from_structures([s], layout, dtype=torch.float64)
    return s, layout, b, edge_vectors(b)


def reference_blocks(ref_mods, net64, cfg, b, vec, index_to_Z, orbital_types) -> np.ndarray:
    """Flat H (hambench order) of every edge of ``b`` from the reference net and its own readout."""
    utils, e3 = ref_mods["utils"], ref_mods["e3modules"]
    z2i = {z: k for k, z in enumerate(index_to_Z)}
    x = torch.tensor([z2i[int(z)] for z in b.Z])
    length = vec.norm(dim=-1, keepdim=True)
    data = _Data(x=x, edge_index=torch.stack([b.edge_src.long(), b.edge_dst.long()]),
                 edge_attr=torch.cat([length, vec], dim=-1), batch=torch.zeros(len(x), dtype=torch.long))
    with torch.no_grad():
        _, out_edge = net64(data)
    blocks, js, slices = utils.process_targets(orbital_types, torch.tensor(index_to_Z), cfg.target_blocks)
    kernel = e3.e3TensorDecomp(cfg.net_out_irreps, js, default_dtype_torch=torch.float64, spinful=False,
                               no_parity=cfg.no_parity, if_sort=False)
    Hred = kernel.get_H(out_edge)
    rot = e3.Rotate(torch.float64)
    n_orb = [int(sum(2 * l + 1 for l in ot)) for ot in orbital_types]
    flat = []
    for e in range(Hred.shape[0]):
        zi, zj = int(b.Z[b.edge_src[e]]), int(b.Z[b.edge_dst[e]])
        i, j = z2i[zi], z2i[zj]
        full = torch.zeros(n_orb[i], n_orb[j], dtype=torch.float64)
        seen = torch.zeros(n_orb[i], n_orb[j], dtype=torch.bool)
        for t, blk in enumerate(blocks):
            sl = blk.get(f"{zi} {zj}")
            if sl is None:
                continue
            r0, r1, c0, c1 = (int(v) for v in sl)
            full[r0:r1, c0:c1] = Hred[e, slices[t]:slices[t + 1]].reshape(r1 - r0, c1 - c0)
            seen[r0:r1, c0:c1] = True
        assert bool(seen.all()), "targets must tile every block"
        full = rot.openmx2wiki_H_full(full, orbital_types[i], orbital_types[j])
        flat.append(full.reshape(-1).numpy())
    return np.concatenate(flat)


def readout_soc(ref_mods, out: Path, seed: int, n_edges: int = 4) -> None:
    """The reference's spinful readout alone (``e3TensorDecomp.get_H``, SOC) on random net outputs, for one
    element with shells s, s, p, d (``target_blocks_type = all``): ``readout_soc.npz`` with the outputs ``x`` and
    the complex (2n × 2n, spin-major) blocks ``H`` in hambench's orbital order."""
    utils, e3 = ref_mods["utils"], ref_mods["e3modules"]
    shells = [0, 0, 1, 2]
    targets, irreps, _ = utils.orbital_analysis({"83": shells}, "a", True)
    blocks, js, slices = utils.process_targets([shells], torch.tensor([83]), targets)
    kernel = e3.e3TensorDecomp(irreps, js, default_dtype_torch=torch.float64, spinful=True)
    x = torch.randn(n_edges, irreps.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    Hred = kernel.get_H(x)  # (E, 4 spin blocks uu ud du dd, Σ targets), OpenMX order
    n = sum(2 * l + 1 for l in shells)
    full = torch.zeros(n_edges, 2 * n, 2 * n, dtype=torch.complex128)
    for t, blk in enumerate(blocks):
        r0, r1, c0, c1 = (int(v) for v in blk["83 83"])
        for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            full[:, a * n + r0:a * n + r1, b * n + c0:b * n + c1] = \
                Hred[:, k, slices[t]:slices[t + 1]].reshape(n_edges, r1 - r0, c1 - c0)
    P, _ = e3.Rotate(torch.float64).openmx2wiki_left_right(shells, shells)
    P = torch.block_diag(P, P).to(torch.complex128)
    H = P @ full @ P.T
    np.savez(out / "readout_soc.npz", x=x.numpy(), H=H.reshape(n_edges, -1).numpy(), shells=np.array(shells))


class _Data(dict):
    """What the reference's ``Net.forward`` reads of a torch_geometric batch (attribute and item access)."""

    __getattr__ = dict.__getitem__


def randomize(net, seed: int) -> None:
    """Every parameter random: the zero biases and unit layer-norm weights too (so each key matters)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias") or ".norm." in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def paper_count(ref_mods, ref: Path, index_to_Z, orbital_types, tmp: Path) -> tuple[int, int]:
    """(parameters, of which in the unused lin_node) of the reference at its paper config on these elements."""
    ini = tmp / "paper.ini"
    ini.write_text(f"[basic]\nsave_dir = {tmp / 'paper_run'}\n")
    cfg = train_config(ref_mods, ini, index_to_Z, orbital_types)
    torch.set_default_dtype(torch.float32)
    net = ref_mods["model"].Net(**net_kwargs(cfg, len(index_to_Z)))
    n = sum(p.numel() for p in net.parameters())
    return n, sum(p.numel() for p in net.lin_node.parameters())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="local clone of Xiaoxun-Gong/DeepH-E3")
    ap.add_argument("--out", type=Path, default=Path("tests/data/deephe3_ref"))
    ap.add_argument("--realdata", type=Path, default=Path("/work/shared/realdata/deeph_new_MoTe2"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--skip-paper-count", action="store_true")
    args = ap.parse_args(argv)
    ref_mods = load_reference(args.ref)
    s, layout, b, vec = mote2(args.realdata)
    index_to_Z = sorted(int(z) for z in layout.elements)
    orbital_types = [list(map(int, layout.species[z])) for z in index_to_Z]

    run = args.out / "mote2_small"
    src = run / "src"
    src.mkdir(parents=True, exist_ok=True)
    ini = src / "train.ini"
    ini.write_text(SMALL_NETWORK.format(save_dir="./deephe3_runs", seed=args.seed))
    cfg = train_config(ref_mods, ini, index_to_Z, orbital_types)
    kw = net_kwargs(cfg, len(index_to_Z))
    (src / "build_model.py").write_text(build_model_py(kw))
    (src / "dataset_info.json").write_text(json.dumps(dict(spinful=False, index_to_Z=index_to_Z,
                                                           orbital_types=orbital_types)))
    (src / "target_blocks.json").write_text(json.dumps(cfg.target_blocks))

    torch.set_default_dtype(torch.float32)
    torch.manual_seed(args.seed)
    net = ref_mods["model"].Net(**kw)
    randomize(net, args.seed + 1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, betas=(0.9, 0.999))
    torch.save({"epoch": 0, "val_loss": 1.0, "state_dict": net.state_dict(),
                "optimizer_state_dict": opt.state_dict(), "scheduler_state_dict": {}}, run / "best_model.pkl")

    torch.set_default_dtype(torch.float64)
    net64 = ref_mods["model"].Net(**kw)
    # the parameters only: the file's buffers (e3nn's 3j symbols, the Gaussian centres) were made in float32
    params = dict(net64.named_parameters())
    saved = torch.load(run / "best_model.pkl", weights_only=True)["state_dict"]
    net64.load_state_dict({k: v for k, v in saved.items() if k in params}, strict=False)
    H = reference_blocks(ref_mods, net64, cfg, b, vec, index_to_Z, orbital_types)
    np.savez(args.out / "ref_outputs.npz", H=H, src=b.edge_src.numpy().astype(np.int32),
             dst=b.edge_dst.numpy().astype(np.int32), shift=b.shift.numpy().astype(np.int32),
             Z=b.Z.numpy().astype(np.int32))
    readout_soc(ref_mods, args.out, args.seed + 2)
    n_small = sum(p.numel() for p in net.parameters())
    print(f"reference commit {commit_of(args.ref)}; small net: {n_small:,} parameters "
          f"({sum(p.numel() for p in net.lin_node.parameters())} in lin_node); {len(H):,} H values on "
          f"{b.num_edges} edges → {args.out}")
    if not args.skip_paper_count:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            n, n_node = paper_count(ref_mods, args.ref, index_to_Z, orbital_types, Path(tmp))
        print(f"paper config on MoTe2 (train_default.ini): {n:,} parameters, {n_node} of them in the unused lin_node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
