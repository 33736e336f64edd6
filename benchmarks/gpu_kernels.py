"""GPU benchmark (prepared for a CUDA machine; never run in CI): e3nn vs the fast kernel (models/_fast_tp.py) vs
cuEquivariance (when ``cuequivariance_torch`` is importable) on the tensor products of the paper-size models.
``--device cpu --edges 64 --reps 1`` dry-runs it on a machine without a GPU.

Cases (float32, CUDA, shapes of the paper presets; edges ~ a batch of QM9 molecules or a DeepH-E3 crystal):

* qhnet-conv: 128x(0e..4e, parity (-1)^l) ⊗ SH(4) → same, 'uvu', per-edge weights (QHNet ConvLayer);
* qhnet-pair: 128x(0e..4e) ⊗ same → same, 'uuu', per-edge weights (QHNet PairLayer);
* deephe3-conv: DeepH-E3's merged node+node+edge irreps ⊗ SH(4) → gate irreps, 'uvw', shared weights;
* deephe3-sc: 64x0e+32x1o+16x2e+8x3o+8x4e ⊗ 4x0e (species one-hot) → same, fully connected.

Each: forward, and forward+backward (sum of squares), median of ``--reps`` CUDA-synchronised calls after a
warm-up; the fast result is checked against e3nn (max relative difference printed). Stops adding cases once ``--budget`` seconds are spent (default 480: the script ends under 10 minutes).

    python benchmarks/gpu_kernels.py --log benchmarks/results/gpu_kernels.log
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from e3nn import o3

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _instr(ir1, ir2, iro, mode):
    out = []
    for a, (m1, r1) in enumerate(ir1):
        for b, (m2, r2) in enumerate(ir2):
            for c, (mo, ro) in enumerate(iro):
                if ro in r1 * r2 and not (mode == "uvu" and mo != m1) and not (mode == "uuu" and not m1 == m2 == mo):
                    out.append((a, b, c, mode, True))
    return out


def cases(edges: int):
    sh = o3.Irreps.spherical_harmonics(4)
    qh = o3.Irreps("128x0e+128x1o+128x2e+128x3o+128x4e")
    qs = o3.Irreps("128x0e+128x1e+128x2e+128x3e+128x4e")
    mid = o3.Irreps("64x0e+32x1o+16x2e+8x3o+8x4e")
    merged = (mid + mid + mid).sort().irreps.simplify()
    gate = o3.Irreps("64x0e+64x0e+32x1o+16x2e+8x3o+8x4e")
    E = edges
    tp = o3.TensorProduct(qh, sh, qh, _instr(qh, sh, qh, "uvu"), shared_weights=False, internal_weights=False)
    yield "qhnet-conv", tp, [(E, qh.dim), (E, sh.dim), (E, tp.weight_numel)], ("uvu", qh, sh, qh)
    tp = o3.TensorProduct(qs, qs, qs, _instr(qs, qs, qs, "uuu"), shared_weights=False, internal_weights=False)
    yield "qhnet-pair", tp, [(E, qs.dim), (E, qs.dim), (E, tp.weight_numel)], ("uuu", qs, qs, qs)
    tp = o3.TensorProduct(merged, sh, gate, _instr(merged, sh, gate, "uvw"), shared_weights=True,
                          internal_weights=False)
    yield "deephe3-conv", tp, [(E, merged.dim), (E, sh.dim), (tp.weight_numel,)], ("uvw", merged, sh, gate)
    tp = o3.FullyConnectedTensorProduct(mid, "4x0e", mid)
    yield "deephe3-sc", tp, [(E, mid.dim), (E, 4)], None


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timeit(fn, reps):
    fn()
    _sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def cue_module(spec, dev):
    """A cuEquivariance module for the same product, or None (not importable, or the API differs)."""
    if spec is None:
        return None
    try:
        import cuequivariance as cue
        import cuequivariance_torch as cuet

        mode, ir1, ir2, iro = spec
        I1, I2, IO = (cue.Irreps("O3", str(x)) for x in (ir1, ir2, iro))
        if mode == "uvu":
            return cuet.ChannelWiseTensorProduct(I1, I2, filter_irreps_out=IO, layout=cue.ir_mul,
                                                 shared_weights=False, device=dev)
        if mode == "uvw":
            return cuet.FullyConnectedTensorProduct(I1, I2, IO, layout=cue.ir_mul, shared_weights=True, device=dev)
    except Exception as e:  # noqa: BLE001 - optional dependency; say why and go on
        print(f"    cuEquivariance unavailable for this case: {type(e).__name__}: {str(e)[:120]}", flush=True)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--budget", type=float, default=480.0)
    ap.add_argument("--device", default="cuda", help="cuda; cpu only to dry-run the script")
    ap.add_argument("--log", type=Path)
    args = ap.parse_args()
    lines = []

    def say(s):
        print(s, flush=True)
        lines.append(s)

    from hambench.models import _fast_tp as fast

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        say("no CUDA device: nothing to measure")
        return
    t_start = time.perf_counter()
    say(f"# python benchmarks/gpu_kernels.py --edges {args.edges} --reps {args.reps} --device {args.device}")
    name_dev = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu (dry run)"
    say(f"device {name_dev}, torch {torch.__version__}, float32, {args.edges} edges")
    say(f"{'case':14s} {'kernel':8s} {'forward ms':>11s} {'fwd+bwd ms':>11s} {'vs e3nn fwd':>11s} {'fwd+bwd':>8s}  check")
    for name, tp, shapes, spec in cases(args.edges):
        if time.perf_counter() - t_start > args.budget:
            say(f"{name}: skipped (time budget)")
            continue
        tp = tp.to(dev)
        torch.manual_seed(0)
        xs = [torch.randn(*s, device=dev, requires_grad=True) for s in shapes]
        ref = None
        base = None
        for kernel in ("e3nn", "fast", "cueq"):
            if kernel == "cueq":
                mod = cue_module(spec, dev)
                if mod is None:
                    continue
                f = (lambda m=mod: m(*xs)) if spec[0] != "uvw" else (lambda m=mod: m(xs[0], xs[1], xs[2][None]))
            else:
                fast.set_kernel(tp, kernel)
                f = lambda: tp(*xs)  # noqa: E731
            try:
                with torch.no_grad():
                    tf = timeit(f, args.reps)
                tb = timeit(lambda: f().pow(2).sum().backward(), args.reps)
                y = f().detach()
            except Exception as e:  # noqa: BLE001 - report and continue
                say(f"{name:14s} {kernel:8s} failed: {type(e).__name__}: {str(e)[:120]}")
                continue
            if ref is None:
                ref, base = y, (tf, tb)
            check = "" if kernel == "cueq" else f"max rel diff {float((y - ref).abs().max() / ref.abs().max()):.1e}"
            say(f"{name:14s} {kernel:8s} {tf * 1e3:11.3f} {tb * 1e3:11.3f} {base[0] / tf:11.2f} {base[1] / tb:8.2f}  {check}")
        del tp, xs
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    say(f"total {time.perf_counter() - t_start:.0f} s")
    if args.log is not None:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        args.log.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
