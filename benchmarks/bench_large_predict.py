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

from hambench.store import open_store

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


def _child(cmd) -> tuple[float, float, float, str]:
    """(wall s, CPU s of the child, peak RSS GB, stdout+stderr) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{out[-2000:]}")
    return time.perf_counter() - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024 ** 2, out


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
    head = (f"{'structure':18s} {'atoms':>6s} {'edges':>10s} {'wall s':>8s} {'CPU s':>8s} {'peak GB':>8s} "
            f"{'forward s':>10s} {'S s':>6s}")
    lines += [f"hambench predict --structures (edge slices of {a.edge_chunk}), threads {a.threads}: whole command "
              "(read, edges, chunked forward, exact S, write); forward s and S s are wall times the store records",
              head]

    def flush():
        if a.output:
            Path(a.output).write_text("\n".join(lines) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        chunked_fwd = None
        for k, f in enumerate(a.structures):
            out = Path(a.keep or tmp) / (Path(f).stem + ".zarr")
            wall, cpu, rss, text = _child([*exe, "predict", a.checkpoint, "--structures", f, "-o", out,
                                           "--overwrite", "--threads", str(a.threads), "--edge-chunk",
                                           str(a.edge_chunk)])
            st = open_store(out)
            at = st.attrs
            fwd = float(at["timing"]["seconds"])
            chunked_fwd = fwd if chunked_fwd is None else chunked_fwd
            lines.append(f"{Path(f).name:18s} {st.meta.counts.atoms:6d} {st.meta.counts.edges:10,d} {wall:8.1f} "
                         f"{cpu:8.1f} {rss:8.2f} {fwd:10.1f} {float(at['overlap'].get('seconds', 0)):6.1f}")
            print(lines[-1], flush=True)
            flush()
            if k == 0 and not a.no_baseline:  # the baseline right after the smallest size, in the same run
                wall, cpu, rss, text = _child([sys.executable, "-c", _WHOLE, a.checkpoint, f, str(a.threads)])
                whole = float(text.split("forward_s")[1].split()[0])
                lines.append(f"{'  baseline: whole':18s} {'':6s} {'':10s} {wall:8.1f} {cpu:8.1f} {rss:8.2f} "
                             f"{whole:10.1f}   (the model's plain forward, no slices, no S, no write; "
                             f"chunked/whole forward time {chunked_fwd / whole:.2f}x)")
                print(lines[-1], flush=True)
                flush()
    text = "\n".join(lines) + "\n"
    print(text)
    if a.output:
        Path(a.output).write_text(text)


if __name__ == "__main__":
    main()
