"""Benchmark: the fast tensor-product kernel (models/_fast_tp.py) against e3nn, its reference, in the same run.

For each model, preset and store (qhnet on the demo molecules, deephe3 and tracegrad-deephe3 on MoTe2 and the
demo molecules), at 1 and 2 torch threads, float32 on CPU: one model is built, and its kernel switched between
``e3nn`` and ``fast`` (same weights) in alternating rounds so that both see the same machine load. Measured:

* inference: one forward pass (eval, no grad) over a batch of the preset's batch size;
* training step: the engine's step (forward, loss, backward, gradient norm/clip, optimiser step).

Printed per row: the median wall time of each kernel and their ratio (e3nn / fast, > 1 = fast is faster), and
for one thread the same from the thread's CPU time (robust to other jobs taking the cores). Prints progress.

    python benchmarks/bench_kernels.py                        # everything (~10 min on an idle 2-core machine)
    python benchmarks/bench_kernels.py --presets tiny --threads 1 --rounds 3
    python benchmarks/bench_kernels.py --stores /tmp/kern     # reuse demo.zarr / mote2.zarr from a folder
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

CASES = [("qhnet", "molecules"), ("deephe3", "MoTe2"), ("deephe3", "molecules"), ("tracegrad-deephe3", "MoTe2")]


def _timed(fn, reps: int) -> tuple[float, float]:
    """(wall, this thread's CPU) seconds per call, over ``reps`` calls."""
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - w0) / reps, (time.thread_time() - c0) / reps


def bench_case(name, preset, store_path, rounds, reps, threads, log):
    import bench_models as bm

    from hambench.models import _fast_tp as fast
    from hambench.models.run import build_model, resolve_config
    from hambench.store._store import open_store
    from hambench.training import Trainer

    torch.set_num_threads(threads)
    res = resolve_config(name, preset)
    st = open_store(store_path)
    if st.attrs["kind"] not in res.spec.kinds:
        return None
    cfg = res.train
    cfg.dtype = "float32"
    bs = min(cfg.batch_size, len(st))
    model = build_model(res.spec, res.model, st.layout, "float32", seed=0, kernel="e3nn")
    batches = bm.batches(st, st.layout, bs, torch.float32)
    b = batches[0]
    out = {"batch": bs, "edges": int(b.edge_src.numel())}
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(model, cfg, None, None, d, {}, device="cpu")

        def step():
            tr.backward(b)
            tr.grad_norm()
            tr.optimizer.step()

        def infer():
            model.eval()
            with torch.no_grad():
                model(b)
            model.train()

        times = {(k, what): [] for k in fast.KERNELS for what in ("infer", "train")}
        for k in fast.KERNELS:  # warm-up: plans, allocations
            fast.set_kernel(model, k)
            infer(), step()
        for r in range(rounds):
            for k in (fast.KERNELS if r % 2 == 0 else fast.KERNELS[::-1]):
                fast.set_kernel(model, k)
                times[k, "infer"].append(_timed(infer, reps))
                times[k, "train"].append(_timed(step, reps))
            log(f"  {name} {preset} {Path(store_path).stem} {threads} thread(s): round {r + 1}/{rounds}")
    for key, v in times.items():
        out[key] = (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
    return out


def per_product(name, preset, store_path, reps, log):
    """Each distinct tensor product of the model on the first batch, alone: (label, e3nn (fwd, fwd+bwd), fast
    (fwd, fwd+bwd)) in this thread's CPU seconds per call, with the inputs the model gave it."""
    import bench_models as bm
    from e3nn import o3

    from hambench.models import _fast_tp as fast
    from hambench.models.run import build_model, resolve_config
    from hambench.store._store import open_store

    res = resolve_config(name, preset)
    st = open_store(store_path)
    model = build_model(res.spec, res.model, st.layout, "float32", seed=0, kernel="e3nn")
    b = bm.batches(st, st.layout, min(res.train.batch_size, len(st)), torch.float32)[0]
    seen = {}

    def grab(m, args, out):
        key = (str(m.irreps_in1), str(m.irreps_in2), str(m.irreps_out), args[0].shape[0])
        seen.setdefault(key, (m, [a.detach() for a in args]))

    hooks = [m.register_forward_hook(grab) for m in model.modules()
             if isinstance(m, o3.TensorProduct) and fast.supported(m)]
    with torch.no_grad():
        model(b)
    for h in hooks:
        h.remove()
    rows = []
    for (i1, i2, io, Z), (m, args) in seen.items():
        t = {}
        for k in fast.KERNELS:
            fast.set_kernel(m, k)
            a = [x.clone().requires_grad_(True) for x in args]
            m(*a).pow(2).sum().backward()
            with torch.no_grad():
                f = _timed(lambda: m(*a), reps)[1]
            t[k] = (f, _timed(lambda: m(*a).pow(2).sum().backward(), reps)[1])
        mode = m.instructions[0].connection_mode
        rows.append((f"{mode} {Z} items: {i1} x {i2} -> {io}", t["e3nn"], t["fast"]))
        log(f"  {name} product {len(rows)}/{len(seen)}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="paper,tiny")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5, help="alternating e3nn/fast rounds (median reported)")
    ap.add_argument("--reps", type=int, default=2, help="calls per round")
    ap.add_argument("--stores", type=Path, help="folder with demo.zarr and mote2.zarr (default: build them)")
    ap.add_argument("--cases", default=",".join(f"{m}:{s}" for m, s in CASES))
    ap.add_argument("--per-product", action="store_true",
                    help="instead: each distinct tensor product of the models alone (1 thread, CPU time)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    def log(s):
        print(s, file=sys.stderr, flush=True)

    tmp = None
    if args.stores is None:
        import bench_models as bm

        tmp = tempfile.TemporaryDirectory()
        bm.stores(Path(tmp.name), "9")
        folder = Path(tmp.name)
    else:
        folder = args.stores
    paths = {"molecules": folder / "demo.zarr", "MoTe2": folder / "mote2.zarr"}
    load = os.getloadavg()[0]
    if args.per_product:
        torch.set_num_threads(1)
        print(f"per tensor product, 1 thread, CPU ms per call (forward / forward+backward); load average {load:.1f}")
        for preset in args.presets.split(","):
            for case in args.cases.split(","):
                name, store = case.split(":")
                if not paths[store].exists():
                    continue
                print(f"{name} {preset} on {store}:")
                for label, (ef, eb), (ff, fb) in per_product(name, preset, paths[store], args.reps, log):
                    print(f"  e3nn {ef * 1e3:7.1f} / {eb * 1e3:7.1f}  fast {ff * 1e3:7.1f} / {fb * 1e3:7.1f}  "
                          f"ratio {ef / ff:4.1f} / {eb / fb:4.1f}  {label}", flush=True)
        return
    print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__}, float32; load average {load:.1f} at start "
          "(a shared machine: other jobs were running; ratios are same-run, alternating rounds)")
    print(f"{'model':18s} {'preset':6s} {'store':9s} {'thr':>3s} {'batch':>5s} {'edges':>5s} | "
          f"{'infer e3nn':>10s} {'fast':>8s} {'ratio':>5s} {'cpu ratio':>9s} | "
          f"{'step e3nn':>9s} {'fast':>8s} {'ratio':>5s} {'cpu ratio':>9s}")
    for preset in args.presets.split(","):
        for case in args.cases.split(","):
            name, store = case.split(":")
            if not paths[store].exists():
                print(f"{name:18s} {preset:6s} {store:9s} (store missing)")
                continue
            for threads in (int(t) for t in args.threads.split(",")):
                r = bench_case(name, preset, paths[store], args.rounds, args.reps, threads, log)
                if r is None:
                    continue
                row = f"{name:18s} {preset:6s} {store:9s} {threads:3d} {r['batch']:5d} {r['edges']:5d} |"
                for what in ("infer", "train"):
                    (we, ce), (wf, cf) = r["e3nn", what], r["fast", what]
                    cpu = f"{ce / cf:9.2f}" if threads == 1 else f"{'-':>9s}"
                    row += f" {we:9.4f}s {wf:7.4f}s {we / wf:5.2f} {cpu} |"
                print(row.rstrip(" |"), flush=True)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
