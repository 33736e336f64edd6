"""Write ``tests/data/airs_ref/``: a checkpoint of AIRS' QH9 QHNet at a small size with random weights, as AIRS'
``main.py`` saves it, and the reference's float64 outputs on three demo molecules — the oracle of
``tests/test_import_airs.py`` (``import_airs_qhnet`` then hambench's ``qhnet`` must reproduce them).

    python benchmarks/ref_airs_fixture.py /path/to/AIRS [--commit SHA] [-o tests/data/airs_ref]

``/path/to/AIRS`` is a clone of github.com/divelab/AIRS (only ``OpenDFT/QHBench/QH9/models`` is read; shims for
torch_cluster / torch_scatter / torch_geometric are in ``ref_airs_common.py``, nothing of AIRS is copied).

Steps: build ``ori_QHNet_with_bias.QHNet`` under float64 (e3nn's constants exact), add seeded noise to every
parameter and round it to float32 (``ref_airs_common.perturb_``), cast the model to float64 (AIRS declares its
Bernstein α and buffers float32, which would leave softplus(α) rounded to float32), give the Bernstein basis its exact float64
log-binomials (AIRS keeps float32 ones: ``exact_bernstein_``), run it on the molecules in float64
(``keep_blocks=True``, the training/eval path) and assemble each full matrix in QHNet order (Hartree). The
checkpoint is ``{"state_dict": float32 state dict, "eval": {}, "batch_idx": 0}`` like ``main.py``'s
``results_best.pt``, without e3nn's codegen constants ``…_compiled_main_left_right._w3j_*`` (recomputable, and
290k numbers — the fixture stays under 1 MB).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ref_airs_common as ref  # noqa: E402

#: the small configuration (AIRS constructor arguments); 5 layers keep two self/pair layers (start_layer 2)
CONFIG = dict(in_node_features=1, sh_lmax=4, hidden_size=8, bottle_hidden_size=4, num_gnn_layers=5,
              max_radius=4.0, num_nodes=10, radius_embed_dim=8)
#: QM9 indices of the demo molecules: NH3, CH3OH, propyne (H, C, N, O; propyne's far H–H pairs lie beyond 4 Å)
MOLECULES = (2, 8, 9)
SEED = 1234


def build(root):
    torch.set_default_dtype(torch.float64)
    mod = ref.load_airs(root)
    torch.manual_seed(SEED)
    model = mod.QHNet(**CONFIG)
    model.set("cpu")
    ref.perturb_(model, SEED)
    return model.double()  # AIRS declares the Bernstein α and buffers float32: the reference runs all in float64


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("airs", help="local clone of github.com/divelab/AIRS")
    ap.add_argument("--commit", help="the clone's commit, when it is not a git checkout")
    ap.add_argument("-o", "--output", default=str(ref.ROOT / "tests" / "data" / "airs_ref"))
    a = ap.parse_args(argv)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    model = build(a.airs)
    state = {k: (v.float() if v.is_floating_point() else v).clone() for k, v in model.state_dict().items()
             if "_compiled_main_" not in k}
    torch.save({"state_dict": state, "eval": {}, "batch_idx": 0}, out / "airs_qhnet_small.pt")
    ref.exact_bernstein_(model)
    model.eval()
    mols = ref.demo_molecules(MOLECULES)
    with torch.no_grad():
        res = model(ref.airs_batch(mols, torch.float64), keep_blocks=True)
    fulls = ref.full_from_blocks(mols, res["hamiltonian_diagonal_blocks"], res["hamiltonian_non_diagonal_blocks"])
    arrays = {}
    for (k, Z, pos, _), H in zip(mols, fulls):
        arrays[f"H_{k}"], arrays[f"Z_{k}"], arrays[f"pos_{k}"] = H, Z, pos
        print(f"QM9 {k}: {len(Z)} atoms, H {H.shape}, max |H| {np.abs(H).max():.4g} Ha, symmetric to "
              f"{np.abs(H - H.T).max():.1e}")
    np.savez(out / "airs_qhnet_small_outputs.npz", **arrays)
    commit = ref.airs_commit(a.airs, a.commit)
    info = {"airs_commit": commit, "model": "OpenDFT/QHBench/QH9/models/ori_QHNet_with_bias.py QHNet",
            "constructor": CONFIG, "molecules_qm9": list(MOLECULES), "seed": SEED, "units": "Hartree",
            "order": "QHNet (= hambench): per atom in input order, shells s s (s) p p d, m = -l..l",
            "torch": torch.__version__, "e3nn": __import__("e3nn").__version__}
    (out / "fixture.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {out} (AIRS {commit[:12]})")


if __name__ == "__main__":
    main()
