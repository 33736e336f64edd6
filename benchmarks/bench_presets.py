"""The presets' cost: a training step of each model's ``tiny`` and ``small`` presets against the tiny preset that
could not represent d⊗d blocks (issue 33 item 1: the baseline, measured in the same run).

Workload: ``--molecules`` of the shipped QM9 demo molecules (PySCF B3LYP/def2-SVP, basis l_max 2: d⊗d blocks need
irreps up to L = 4) in one batch. For each model the run builds, with the same seed, the configurations below and
times (interleaved round by round, so machine load hits every configuration alike; the median over rounds of the
process CPU time, one thread) a training step: forward, the engine's loss (``loss_terms`` + ``extra_loss``),
backward and an Adam step. The suite's tests train tiny models for a few dozen steps each, so the tiny ratio is
the suite-relevant cost change (model building is timed too: the suite builds many models).

    old tiny    the tiny preset before issue 33 (QHNet sh_lmax 2; DeepH-E3 irreps_mid ≤ 2e, lmax 2)
    tiny        models/configs/<model>.yaml ``tiny``
    small       models/configs/<model>.yaml ``small``
    (extra)     ``--extra MODEL:LABEL=KEY=VALUE,KEY=VALUE`` on top of tiny (candidates while choosing a preset)

Run:  .venv/bin/python benchmarks/bench_presets.py [--models qhnet,deephe3,tracegrad-qhnet,tracegrad-deephe3]
          [--molecules 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

OLD_TINY = {  # what the tiny presets held before they had to fit d⊗d blocks (the baseline)
    "qhnet": ["model.sh_lmax=2", "model.hidden_size=16", "model.bottle_hidden_size=8", "model.num_gnn_layers=3"],
    "deephe3": ["model.irreps_mid=16x0e+8x1o+4x2e", "model.lmax=2", "model.irreps_embed=16x0e", "model.num_blocks=2"],
}
OLD_TINY["tracegrad-qhnet"] = OLD_TINY["qhnet"]
OLD_TINY["tracegrad-deephe3"] = OLD_TINY["deephe3"]


def _store(n: int):
    import hambench.app.demo
    import hambench.pipelines
    from hambench.store._store import open_store

    out = Path(tempfile.mkdtemp(prefix="bench_presets_")) / "qm9.zarr"
    hambench.pipelines.prepare("pyscf/qm9", None, out, raw_dir=hambench.app.demo.demo_raw_dir(), max_heavy=3,
                               limit=max(n, 1), quiet=True)
    return open_store(out)


def _configs(name: str, extra: dict) -> dict:
    from hambench.models.run import resolve_config

    out = {"old tiny": resolve_config(name, "tiny", sets=OLD_TINY[name]), "tiny": resolve_config(name, "tiny"),
           "small": resolve_config(name, "small")}
    for (model, label), sets in extra.items():
        if model == name:
            out[label] = resolve_config(name, "tiny", sets=sets)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="qhnet,deephe3,tracegrad-qhnet,tracegrad-deephe3")
    ap.add_argument("--molecules", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--extra", action="append", default=[], help="MODEL:LABEL=KEY=VALUE,KEY=VALUE (on top of tiny)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from hambench.models._reach import unreachable_parts
    from hambench.models.run import build_model
    from hambench.training import loss_terms
    from hambench.training._data import collate

    extra = {}
    for e in args.extra:
        label, _, sets = e.partition("=")
        model, _, label = label.partition(":")
        extra[(model, label)] = sets.split(",")
    st = _store(args.molecules)
    n = min(args.molecules, len(st))
    batch = collate([st.read_range(0, n)]).to(dtype=torch.float32)
    layout = st.layout
    load = os.getloadavg()
    print(f"# command: python benchmarks/bench_presets.py --models {args.models} --molecules {args.molecules} "
          f"--rounds {args.rounds}" + "".join(f" --extra {e}" for e in args.extra))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs (load "
          f"average {load[0]:.1f}: loaded), torch {torch.__version__}, 1 thread, process CPU time, median of "
          f"{args.rounds} rounds")
    print(f"# {n} QM9 demo molecules, {batch.num_atoms} atoms, {batch.num_edges} edges, float32")
    print("| model | config | parameters | build s | step s | step / old tiny | unreachable block types |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        cfgs = _configs(name, extra)
        models, opts, build = {}, {}, {}
        for k, res in cfgs.items():
            t = time.process_time()
            models[k] = build_model(res.spec, res.model, layout, "float32", 0)
            build[k] = time.process_time() - t
            opts[k] = torch.optim.Adam(models[k].parameters(), lr=1e-4)
        times = {k: [] for k in models}
        for _ in range(args.rounds + 1):  # the first round warms up (discarded)
            for k, m in models.items():
                m.train()
                t = time.process_time()
                opts[k].zero_grad(set_to_none=True)
                out = m(batch)
                tt = loss_terms(out["H"], batch, cfgs[k].train)
                loss = tt["num"] / tt["den"]
                if hasattr(m, "extra_loss"):
                    loss = m.extra_loss(out, batch, loss)[0]
                loss.backward()
                opts[k].step()
                times[k].append(time.process_time() - t)
        base = statistics.median(times["old tiny"][1:])
        for k, m in models.items():
            med = statistics.median(times[k][1:])
            gaps = unreachable_parts(m, layout)
            print(f"| {name} | {k} | {sum(p.numel() for p in m.parameters()):,} | {build[k]:.2f} | {med:.3f} | "
                  f"{med / base:.2f} | {'; '.join(gaps) if gaps else 'none'} |", flush=True)


if __name__ == "__main__":
    main()
