"""``predict --structures`` on twisted bilayer graphene of 10³–10⁴ atoms: wall time and peak memory (issue 31).

Each size runs ``hambench predict CHECKPOINT --structures FILE`` in a child process (peak RSS from the child's own
rusage), i.e. everything the user pays: reading, edges, the edge-chunked DeepH-E3 forward, the exact Gaussian
overlap, the store write. The baseline, measured in the same run on the smallest structure, is the model's plain
``forward`` on the whole structure (no slices), also in a child process: the ratio says what chunking costs in
time and saves in memory.

Make the inputs with ``hambench structures twist graphene.vasp --m M --n N --vacuum 20 -o tblg_M_N.vasp``.

Usage::

    python benchmarks/bench_large_predict.py CHECKPOINT tblg_9_10.vasp tblg_15_16.vasp tblg_28_29.vasp \
        --threads 2 -o benchmarks/results/bench_large_predict.txt
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_WHOLE = """
import sys, time, numpy as np, torch
from pathlib import Path
from hambench.models.run import load_model
from hambench.models._frames import frame_structures, read_structures
from hambench.store import StoreRange
from hambench.training import collate, torch_dtype
torch.set_num_threads(int(sys.argv[3]))
model, ck, layout = load_model(sys.argv[1], "cpu")
dtype = torch_dtype(ck["train_config"].get("dtype", "float32"))
r = StoreRange.from_structures(frame_structures(read_structures(sys.argv[2]), layout, ck, Path(sys.argv[2]), ""),
                               layout, overlap=False)
r.H_ptr = layout.block_ptr(*r.edge_Z())
b = collate(r, layout, dtype=dtype).to("cpu", dtype)
t0 = time.perf_counter()
with torch.no_grad():
    H = model(b)["H"]
print("forward_s", time.perf_counter() - t0, "edges", int(b.edge_src.numel()))
"""


def _child(cmd) -> tuple[float, float, str]:
    """(wall s, peak RSS GB, stdout+stderr) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{out[-2000:]}")
    return time.perf_counter() - t0, ru.ru_maxrss / 1024 ** 2, out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("structures", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--edge-chunk", type=int, default=16384)
    ap.add_argument("--no-baseline", action="store_true", help="skip the whole-structure forward")
    ap.add_argument("--keep", help="write the prediction stores into this folder (kept) instead of a temporary one")
    ap.add_argument("-o", "--output")
    a = ap.parse_args(argv)
    exe = [str(Path(sys.executable).with_name("hambench"))]  # the console script of this Python's environment
    lines = [f"$ {Path(sys.executable).name} benchmarks/bench_large_predict.py " + " ".join(sys.argv[1:] if argv is None else argv),
             f"machine: {os.cpu_count()} cores, shared with other jobs (loaded): times are noisy, ratios are "
             "measured in the same run", ""]
    head = f"{'structure':28s} {'atoms':>7s} {'edges':>10s} {'predict s':>10s} {'peak GB':>8s} {'forward s':>10s}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in a.structures:
            out = Path(a.keep or tmp) / (Path(f).stem + ".zarr")
            wall, rss, text = _child([*exe, "predict", a.checkpoint, "--structures", f, "-o", out, "--overwrite",
                                      "--threads", str(a.threads), "--edge-chunk", str(a.edge_chunk)])
            info = [ln for ln in text.splitlines() if "structure 0:" in ln]
            atoms = info[-1].split(":")[1].split("atoms")[0].strip() if info else "?"
            edges = info[-1].split("atoms,")[1].split("edges")[0].strip() if info else "?"
            fwd = info[-1].split(" in ")[1].split(" s ")[0] if info else "?"
            rows.append((Path(f).name, atoms, edges, wall, rss, fwd))
            print(f"{rows[-1][0]:28s} {atoms:>7s} {edges:>10s} {wall:10.1f} {rss:8.2f} {fwd:>10s}", flush=True)
        lines += [f"hambench predict --structures (edge slices of {a.edge_chunk}), threads {a.threads}: whole "
                  "command (read, edges, chunked forward, exact S, write)", head]
        lines += [f"{r[0]:28s} {r[1]:>7s} {r[2]:>10s} {r[3]:10.1f} {r[4]:8.2f} {r[5]:>10s}" for r in rows]
        if not a.no_baseline:
            f = a.structures[0]
            wall, rss, text = _child([sys.executable, "-c", _WHOLE, a.checkpoint, f, str(a.threads)])
            fwd = float(text.split("forward_s")[1].split()[0])
            lines += ["", f"baseline on {Path(f).name}: the model's whole forward (no slices), child process",
                      f"  forward {fwd:.1f} s, peak {rss:.2f} GB (child wall {wall:.1f} s incl. import and edges)",
                      f"  chunked/whole forward time {float(rows[0][5]) / fwd:.2f}x; whole/chunked peak memory "
                      f"{rss / rows[0][4]:.2f}x (the chunked peak includes S and the store write)"]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.output:
        Path(a.output).write_text(text)


if __name__ == "__main__":
    main()
