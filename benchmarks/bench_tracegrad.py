"""TraceGrad's cost over its backbone on CPU: inference and training step, closed form vs autograd, backbone×2.

Workload: the real QM9 demo molecules (PySCF B3LYP/def2-SVP, shipped with hambench; ``--molecules`` of them in
one batch, all ordered atom pairs as edges). For each backbone (DeepH-E3, QHNet) at the chosen size, the run
builds, with the same seed:

    backbone         the plain model (edge_hooks = None)
    +TG closed       TraceGrad as configured (mode tracegrad, the config's C and v-scale switches), closed form
    +TG autograd     the same, v = autograd.grad(Σz, f) (create_graph=True in training)
    +TG scale_aware  closed form, scale_aware = true (φ reads f/σ, v multiplied by σ)
    +TG norm_ratio   closed form, residual = norm_ratio (NextHAM's ‖f‖/‖v‖ rescaling)
    +TG C=c          closed form with C = c invariant channels (= φ's width; ``--widths``): the cost knob
    +TG as shipped   the two cost bugs of issue 32 put back: a fresh identity through the bottleneck Linear per
                     forward (``_down_transpose``) and the trace decoder run at inference (the closed form's
                     other speed-ups of that issue kept: the full pre-issue code is the older runs in the results)
    backbone×2       (``--deep``) double depth (the paper's Table 7): DeepH-E3 num_blocks ×2; QHNet node
                     layers ×2 and pair/self layers ×2

and times (inference rounds, then training rounds), interleaved round by round so that machine load hits every
model alike (the reported time is the
median over rounds; by default process CPU time with one thread, so that other jobs on a shared machine do not
enter the numbers): *inference* = ``model.eval()`` forward under ``torch.no_grad`` (the autograd form turns
gradients back on inside its hooks); *train step* = forward, the engine's loss
(``hambench.training.loss_terms`` + ``extra_loss``), backward and an Adam step. Ratios are against the backbone
measured in the same run. The paper reports inference ratios 1.064–1.075 on an A6000 (batch 1) and ×1.96–2.21
for double depth.

Sizes: ``paper`` = the backbones' paper configs with the TraceGrad defaults (C = 1024; QHNet with the
``bottleneck: 32`` of models/configs/tracegrad-qhnet.yaml); ``tiny`` = the configs' tiny presets.

Run:  .venv/bin/python benchmarks/bench_tracegrad.py [--size paper|tiny] [--molecules 10] [--rounds 5] [--threads 1]
      [--clock cpu|wall] [--widths 256,128,64] [--channels C] [--train-rounds 3] [--deep] [--no-variants]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _store(n: int):
    import hambench.app.demo
    import hambench.pipelines
    from hambench.store._store import open_store

    out = Path(tempfile.mkdtemp(prefix="bench_tg_")) / "qm9.zarr"
    hambench.pipelines.prepare("pyscf/qm9", None, out, raw_dir=hambench.app.demo.demo_raw_dir(), max_heavy=3,
                               limit=max(n, 1), quiet=True)
    return open_store(out)


def _models(backbone: str, size: str, layout, widths=(), variants=True, deep_too=False, channels=None):
    from hambench.config import merge
    from hambench.models import registry
    from hambench.models.run import resolve_config
    from hambench.models.tracegrad import TraceGrad

    res = resolve_config(f"tracegrad-{backbone}", "tiny" if size == "tiny" else "paper")
    cfg = res.model
    tgc = cfg.tracegrad if channels is None else dataclasses.replace(cfg.tracegrad, channels=channels)
    spec = registry.get(backbone)
    from hambench.models.tracegrad import _backbone_config

    bcfg = _backbone_config(spec, cfg)

    if backbone == "deephe3":
        deep = dataclasses.replace(bcfg, num_blocks=2 * bcfg.num_blocks)
    else:
        n_pair = bcfg.num_gnn_layers - bcfg.start_layer - 1
        deep = dataclasses.replace(bcfg, num_gnn_layers=2 * bcfg.num_gnn_layers,
                                   start_layer=2 * bcfg.num_gnn_layers - 2 * n_pair - 1)
    out = {}

    def make(c, seed=0):
        torch.manual_seed(seed)
        return spec.build(c, layout)

    def tg(**kw):
        # zero_init off: the same work per forward, and v ≠ 0 so that the closed-vs-autograd check means something
        return TraceGrad(make(bcfg), layout,
                         dataclasses.replace(tgc, **{"grad_impl": "closed", "zero_init": False, **kw}))

    out["backbone"] = make(bcfg)
    out["+TG closed"] = tg()  # the configured TraceGrad (its channels C)
    if variants:
        out["+TG autograd"] = tg(grad_impl="autograd")
        out["+TG scale_aware"] = tg(scale_aware=True)
        out["+TG norm_ratio"] = tg(residual="norm_ratio")
    for c in widths:
        if c != tgc.channels:
            out[f"+TG C={c}"] = tg(channels=c)
    if variants:  # as shipped before issue 32: identity through the bottleneck per forward, decoder at inference
        leg = tg()
        for b in leg.blocks:
            b._down_transpose = types.MethodType(_legacy_down_transpose, b)
        leg.legacy = True
        out["+TG as shipped"] = leg
    if deep_too:
        out["backbone×2"] = make(deep)
    if "+TG autograd" in out:  # same TraceGrad parameters in both forms
        out["+TG autograd"].load_state_dict(out["+TG closed"].state_dict())
    return out, tgc, res.train


def _legacy_down_transpose(self, vx):
    """The transpose as shipped before issue 32: a fresh identity pushed through the bottleneck Linear."""
    if self.down is None:
        return vx
    eye = torch.eye(self.irreps.dim, dtype=vx.dtype, device=vx.device)
    return vx @ self.down(eye).t()


def _nparams(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _time(fn, clock) -> float:
    t = clock()
    fn()
    return clock() - t


def _print_table(bb, models, times, tgc, dev):
    """Medians and ratios against the backbone of the same rounds."""
    med = {k: {w: statistics.median(v) if v else float("nan") for w, v in d.items()} for k, d in times.items()}
    base = med["backbone"]
    blocks = len(models["+TG closed"].blocks)
    print(f"\n## {bb}: {blocks} hooked blocks, C = {tgc.channels}, K = {models['+TG closed'].K}, "
          f"bottleneck {tgc.bottleneck}; closed vs autograd H: {dev:.1e} relative (float32)")
    print(f"{'model':16s} {'params':>10s} {'infer s':>9s} {'ratio':>7s} {'train s':>9s} {'ratio':>7s}")
    for k, m in models.items():
        print(f"{k:16s} {_nparams(m):10d} {med[k]['infer']:9.4f} {med[k]['infer'] / base['infer']:7.3f} "
              f"{med[k]['train']:9.4f} {med[k]['train'] / base['train']:7.3f}")
    if "+TG autograd" in med:
        c, a = med["+TG closed"], med["+TG autograd"]
        print(f"autograd / closed: inference {a['infer'] / c['infer']:.3f}, "
              f"train step {a['train'] / c['train']:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("paper", "tiny"), default="paper")
    ap.add_argument("--molecules", type=int, default=10, help="demo molecules in the batch (at most 10)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: process CPU time (robust to other jobs on a shared machine; with --threads 1 it is "
                         "the work done), wall: elapsed time")
    ap.add_argument("--backbones", default="deephe3,qhnet")
    ap.add_argument("--widths", default="256,128,64", help="other channel counts C (= φ's width) to time")
    ap.add_argument("--channels", type=int, default=None, help="C of '+TG closed' (default: the config's)")
    ap.add_argument("--train-rounds", type=int, default=3, help="training-step rounds (0: inference only)")
    ap.add_argument("--deep", action="store_true", help="also time the backbone at double depth")
    ap.add_argument("--no-variants", action="store_true", help="only the backbone and the widths")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from hambench.training._data import collate
    from hambench.basis._layout import BasisLayout
    from hambench.training import TrainConfig, loss_terms

    st = _store(args.molecules)
    n = min(args.molecules, len(st))
    batch = collate([st.read_range(0, n)]).to(dtype=torch.float32)
    layout = BasisLayout(st.species)
    load = os.getloadavg()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} threads, {args.clock} clock, load average {load[0]:.1f}")
    print(f"# {n} QM9 demo molecules, {batch.num_atoms} atoms, {batch.num_edges} edges, float32, size {args.size}, "
          f"{args.rounds} rounds (median)")
    for bb in args.backbones.split(","):
        widths = [int(w) for w in args.widths.split(",") if w]
        models, tgc, tcfg = _models(bb, args.size, layout, widths, not args.no_variants, args.deep, args.channels)
        tcfg = TrainConfig(**{**tcfg.__dict__})
        opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}

        def infer(m):
            m.eval()
            with torch.no_grad():  # (models.common.BlockHead caches tensors: inference_mode ones break training)
                if getattr(m, "legacy", False):
                    return m(batch, traces=True)["H"]
                return m(batch)["H"]

        def step(k):
            m = models[k]
            m.train()
            opts[k].zero_grad(set_to_none=True)
            out = m(batch)
            t = loss_terms(out["H"], batch, tcfg)
            loss = t["num"] / t["den"]
            if hasattr(m, "extra_loss"):
                loss, _ = m.extra_loss(out, batch, loss)
            loss.backward()
            opts[k].step()

        # warm-up (JIT profiling runs) and a correctness check: both forms give the same H
        for k, m in models.items():
            for _ in range(2):
                infer(m)
                if args.train_rounds:
                    step(k)
        dev = float("nan")
        if "+TG autograd" in models:
            models["+TG autograd"].load_state_dict(models["+TG closed"].state_dict())
            models["+TG as shipped"].load_state_dict(models["+TG closed"].state_dict())
            Hc, Ha = infer(models["+TG closed"]), infer(models["+TG autograd"])
            dev = float((Hc - Ha).abs().max() / Ha.abs().max())
            dev_leg = float((infer(models["+TG as shipped"]) - Hc).abs().max() / Hc.abs().max())
            print(f"# {bb}: as shipped vs now, H: {dev_leg:.1e} relative (float32)")
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        times = {k: {"infer": [], "train": []} for k in models}
        # inference rounds first (fixed parameters, as when predicting: TraceGrad's fused inference weights are
        # computed once), then training rounds
        for _ in range(args.rounds):
            for k, m in models.items():
                times[k]["infer"].append(_time(lambda: infer(m), clock))
        for _ in range(args.train_rounds):
            for k, m in models.items():
                times[k]["train"].append(_time(lambda: step(k), clock))
        _print_table(bb, models, times, tgc, dev)

if __name__ == "__main__":
    main()
