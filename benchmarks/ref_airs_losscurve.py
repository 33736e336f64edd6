"""hambench's training engine against AIRS' QH9 training step, from the same initial weights (issue 32 item 1).

    python benchmarks/ref_airs_losscurve.py /path/to/AIRS [--steps 60] [--dtype float64] [-o benchmarks/results]

AIRS' ``ori_QHNet_with_bias.QHNet`` (a clone of github.com/divelab/AIRS; shims in ``ref_airs_common.py``) is
built at the small size of ``ref_airs_fixture.py`` with AIRS' own random initialisation (seed 0). Its weights go
into hambench's ``qhnet`` through ``import_airs_qhnet``. Then, on the demo molecules (the store
``hambench prepare --source pyscf/qm9 --max-heavy 3 --limit 10`` makes, no DFT run):

* **hambench** — the engine (``hambench.training.Trainer``: its loader, shuffling, loss, clipping, AdamW and
  warm-up/linear-decay schedule) with the QH9 recipe of ``models/configs/qhnet.yaml`` (``loss_unit: Ha``,
  AdamW β (0.99, 0.999), weight decay 0.01, clip 5, MSE + MAE per molecule) shortened: ``--steps`` steps,
  ``--warmup`` warm-up steps, batch ``--batch-size``. Two ways to hold AIRS' weights:
  ``scaled``: AIRS' parameters unchanged and a constant ×27.211386245988 eV/Ha on the output (the
  parameterisation AIRS trains); ``folded``: the run folder ``import_airs_qhnet`` writes (the factor folded into
  the last layer of the four expansion MLPs — the same function, but Adam's steps on those layers are in eV-sized
  units, so fine-tuning follows another path);
* **AIRS** — QH9's ``main.py`` step written out (its ``criterion``: per molecule Σ|Δ|²/n + Σ|Δ|/n over the
  masked 14×14 blocks, mean over molecules, Hartree; ``AdamW(lr, betas=(0.99, 0.999))``; ``clip_grad_norm_(…,
  5)``; ``get_polynomial_decay_schedule_with_warmup(power=1)``), on the very batches the hambench loader yielded,
  in the same order, with labels from the demo's raw Fock matrices (Hartree, PySCF order → QHNet order).

Printed and written (``ref_airs_losscurve_<dtype>.txt`` and ``.json``): the per-step losses (Hartree), gradient
norms, and the largest relative difference of each hambench curve from AIRS'.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ref_airs_common as ref  # noqa: E402
from ref_airs_fixture import CONFIG  # noqa: E402

from hambench.app.demo import demo_raw_dir  # noqa: E402
from hambench.basis._conventions import HARTREE_EV  # noqa: E402
from hambench.config import from_dict, to_dict  # noqa: E402
from hambench.models._import_airs import import_airs_qhnet  # noqa: E402
from hambench.models.run import load_model  # noqa: E402
from hambench.pipelines import prepare  # noqa: E402
from hambench.store import open_store  # noqa: E402
from hambench.training import Trainer, TrainConfig, make_loader, torch_dtype  # noqa: E402

HEADS = ("fc_ii", "fc_ij", "fc_ii_bias", "fc_ij_bias")


class Recorder:
    """The engine's loader, recording the store indices of every batch it yields (AIRS replays them)."""

    def __init__(self, loader):
        self.loader, self.seen = loader, []

    def __len__(self):
        return len(self.loader)

    def set_epoch(self, epoch):
        self.loader.set_epoch(epoch)

    def __iter__(self):
        for b in self.loader:
            self.seen.append([int(i) for i in b.index])
            yield b


class Scaled(torch.nn.Module):
    """hambench qhnet with AIRS' parameters as they are and the Hartree → eV factor as a constant."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, batch):
        out = self.net(batch)
        return {**out, "H": out["H"] * HARTREE_EV}


# --- AIRS side ------------------------------------------------------------------------------------------------
def airs_targets(mols, dtype):
    """QH9's training targets of ``mols``: diagonal / off-diagonal 14×14 blocks (Hartree, QHNet order) and masks,
    in ``edge_index_full`` order (as ``datasets.py::cut_matrix`` lays them out)."""
    dg, dm, od, om = [], [], [], []
    for _, Z, _, F in mols:
        perm = ref.qhnet_order(Z)
        H = F[np.ix_(perm, perm)]
        sl = ref.orbital_slices(Z)
        off = np.concatenate([[0], np.cumsum([len(s) for s in sl])])
        for i in range(len(Z)):
            blk, m = np.zeros((14, 14)), np.zeros((14, 14))
            blk[np.ix_(sl[i], sl[i])] = H[off[i]:off[i + 1], off[i]:off[i + 1]]
            m[np.ix_(sl[i], sl[i])] = 1
            dg.append(blk), dm.append(m)
        for i in range(len(Z)):
            for j in range(len(Z)):
                if j != i:
                    blk, m = np.zeros((14, 14)), np.zeros((14, 14))
                    blk[np.ix_(sl[j], sl[i])] = H[off[j]:off[j + 1], off[i]:off[i + 1]]
                    m[np.ix_(sl[j], sl[i])] = 1
                    od.append(blk), om.append(m)
    return [torch.tensor(np.array(x), dtype=dtype) for x in (dg, dm, od, om)]


def airs_loss(out, data, targets):
    """QH9 ``main.py::criterion`` for the Hamiltonian: mean over molecules of MSE + MAE of the real entries."""
    dg, dm, od, om = targets
    n_graph = data.ptr.shape[0] - 1
    edge_graph = data.batch[data.edge_index_full[0]]
    d = out["hamiltonian_diagonal_blocks"] - dg
    o = out["hamiltonian_non_diagonal_blocks"] - od

    def per_graph(x, idx):
        return torch.zeros(n_graph, dtype=x.dtype).index_add_(0, idx, x)

    cnt = per_graph(dm.sum((1, 2)), data.batch) + per_graph(om.sum((1, 2)), edge_graph)
    mse = (per_graph((d ** 2 * dm).sum((1, 2)), data.batch) + per_graph((o ** 2 * om).sum((1, 2)), edge_graph)) / cnt
    mae = (per_graph((d.abs() * dm).sum((1, 2)), data.batch) + per_graph((o.abs() * om).sum((1, 2)), edge_graph)) / cnt
    return mse.mean() + mae.mean()


def poly_warmup(warmup: int, total: int, lr: float, lr_end: float):
    """``transformers.get_polynomial_decay_schedule_with_warmup(power=1)``'s lr factor of step k."""
    def f(k):
        if k < warmup:
            return k / max(1, warmup)
        if k > total:
            return lr_end / lr
        return ((lr - lr_end) * (1 - (k - warmup) / (total - warmup)) + lr_end) / lr
    return f


def train_airs(model, mols_by_index, batches, cfg: TrainConfig, dtype):
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.99, 0.999), amsgrad=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, poly_warmup(cfg.warmup_steps, cfg.decay_steps, cfg.lr,
                                                               cfg.lr_end))
    losses, norms = [], []
    model.train()
    t0 = time.perf_counter()
    for k, idx in enumerate(batches):
        mols = [mols_by_index[i] for i in idx]
        data = ref.airs_batch(mols, dtype)
        loss = airs_loss(model(data), data, airs_targets(mols, dtype))
        opt.zero_grad()
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)))
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if time.perf_counter() - t0 > 10:
            print(f"  AIRS step {k + 1}/{len(batches)} loss {losses[-1]:.6g}", flush=True)
            t0 = time.perf_counter()
    return losses, norms


# --- hambench side --------------------------------------------------------------------------------------------
def train_hambench(model, store, cfg: TrainConfig, run_dir, meta):
    rec = Recorder(make_loader(store, None, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
                               dtype=torch_dtype(cfg.dtype), blocks=("H",)))
    tr = Trainer(model, cfg, rec, None, run_dir, meta, quiet=True)
    tr.fit()
    lines = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x.get("event") == "train"]
    return [x["loss"] for x in steps], [x["grad_norm"] for x in steps], rec.seen


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("airs", help="local clone of github.com/divelab/AIRS")
    ap.add_argument("--commit")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("-o", "--output", default=str(ref.ROOT / "benchmarks" / "results"))
    a = ap.parse_args(argv)
    dtype = torch_dtype(a.dtype)
    tmp = Path(tempfile.mkdtemp(prefix="airs_losscurve_"))
    store_path = tmp / "demo.zarr"
    prepare("pyscf/qm9", None, store_path, raw_dir=demo_raw_dir(), max_heavy=3, limit=10, quiet=True)
    store = open_store(store_path)
    qm9 = [int(str(s).split("_")[-1]) for s in store.array("structures/id")[:]]
    mols_by_index = dict(enumerate(ref.demo_molecules(qm9)))

    # AIRS' own initialisation, and its state dict as main.py saves it
    torch.set_default_dtype(dtype)
    mod = ref.load_airs(a.airs)
    torch.manual_seed(0)
    airs = mod.QHNet(**CONFIG)
    airs.set("cpu")
    airs = airs.to(dtype)  # AIRS declares the Bernstein α and buffers float32
    if dtype == torch.float64:
        ref.exact_bernstein_(airs)
    torch.save({"state_dict": airs.state_dict(), "eval": {}, "batch_idx": 0}, tmp / "airs_init.pt")
    overrides = {k: CONFIG[k] for k in ("hidden_size", "bottle_hidden_size", "num_gnn_layers", "max_radius",
                                        "radius_embed_dim")}
    import_airs_qhnet(tmp / "airs_init.pt", tmp / "imported", overrides=overrides, data=store_path)

    _, ck, layout = load_model(tmp / "imported", dtype=a.dtype)
    cfg = from_dict(TrainConfig, {**ck["train_config"], "dtype": a.dtype, "max_steps": a.steps, "batch_size":
                                  a.batch_size, "warmup_steps": a.warmup, "decay_steps": a.steps, "lr": a.lr,
                                  "log_every": 1, "val_interval": None, "max_epochs": 10 ** 6}, "benchmark")
    meta = {"model": ck["model"], "layout": ck["layout"], "store": ck["store"]}
    curves = {}
    for variant in ("scaled", "folded"):
        net, _, _ = load_model(tmp / "imported", dtype=a.dtype)
        if variant == "scaled":  # AIRS' parameters exactly: the heads unfolded, the factor outside
            sd = torch.load(tmp / "airs_init.pt", weights_only=True)["state_dict"]
            with torch.no_grad():
                for h in HEADS:
                    for p in ("weight", "bias"):
                        getattr(getattr(net, h)[2], p).copy_(sd[f"{h}.hamiltonian.2.{p}"])
            net = Scaled(net)
        print(f"hambench ({variant}): {a.steps} steps", flush=True)
        t0 = time.perf_counter()
        loss, gn, seen = train_hambench(net.train(), store, cfg, tmp / f"run_{variant}", meta)
        curves[variant] = {"loss_Ha": loss, "grad_norm": gn, "seconds": time.perf_counter() - t0}
        batches = seen[:a.steps]
    print("AIRS: the same batches", flush=True)
    t0 = time.perf_counter()
    loss, gn = train_airs(airs, mols_by_index, batches, cfg, dtype)
    curves["airs"] = {"loss_Ha": loss, "grad_norm": gn, "seconds": time.perf_counter() - t0}
    report(a, cfg, curves, batches, qm9, ref.airs_commit(a.airs, a.commit), Path(a.output), argv)


def _rel(x, y) -> float:
    x, y = np.asarray(x), np.asarray(y)
    return float(np.max(np.abs(x - y) / np.abs(y)))


def report(a, cfg, curves, batches, qm9, commit, out: Path, argv) -> None:
    A = curves["airs"]["loss_Ha"]
    cmd = "python benchmarks/ref_airs_losscurve.py " + " ".join(sys.argv[1:] if argv is None else argv)
    res = {"command": cmd, "airs_commit": commit, "dtype": a.dtype, "config": CONFIG, "train": to_dict(cfg),
           "batches_qm9": [[qm9[i] for i in b] for b in batches], "curves": curves,
           "max_rel_diff": {v: _rel(curves[v]["loss_Ha"], A) for v in ("scaled", "folded")},
           "max_rel_diff_grad_norm": {v: _rel(curves[v]["grad_norm"], curves["airs"]["grad_norm"])
                                      for v in ("scaled", "folded")},
           "clipped_steps": {v: int(np.sum(np.asarray(curves[v]["grad_norm"]) > cfg.clip_grad_norm))
                             for v in curves}}
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"ref_airs_losscurve_{a.dtype}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [f"# {cmd}", f"# AIRS {commit}, torch {torch.__version__}, {a.dtype}, one CPU thread; the shared "
             "machine was loaded (timings are not compared here, only losses)",
             f"# QHNet {CONFIG}; demo molecules (10), batch {cfg.batch_size}, AdamW lr {cfg.lr} β {cfg.betas} wd "
             f"{cfg.weight_decay}, warm-up {cfg.warmup_steps} then linear decay to {cfg.lr_end} at {cfg.decay_steps}, "
             f"clip {cfg.clip_grad_norm}, loss MSE+MAE per molecule in {cfg.loss_unit}",
             "# scaled = AIRS' parameters + constant ×27.211386245988 on the output; folded = the run folder "
             "import_airs_qhnet writes (factor folded into the heads' last layer)",
             f"{'step':>4} {'AIRS loss (Ha)':>22} {'hambench scaled':>22} {'hambench folded':>22} "
             f"{'|gn| AIRS':>11} {'|gn| scaled':>11}"]
    S, F = curves["scaled"]["loss_Ha"], curves["folded"]["loss_Ha"]
    for k in range(len(A)):
        lines.append(f"{k + 1:>4} {A[k]:>22.15e} {S[k]:>22.15e} {F[k]:>22.15e} "
                     f"{curves['airs']['grad_norm'][k]:>11.4e} {curves['scaled']['grad_norm'][k]:>11.4e}")
    lines += [f"max relative difference of the loss from AIRS' over {len(A)} steps: scaled "
              f"{res['max_rel_diff']['scaled']:.2e}, folded {res['max_rel_diff']['folded']:.2e}",
              f"max relative difference of the gradient norm: scaled {res['max_rel_diff_grad_norm']['scaled']:.2e}, "
              f"folded {res['max_rel_diff_grad_norm']['folded']:.2e}",
              f"clipped steps (|g| > {cfg.clip_grad_norm}): {res['clipped_steps']}"]
    stem.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-3:]))


if __name__ == "__main__":
    main()
