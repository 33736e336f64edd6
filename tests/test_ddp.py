"""DDP on CPU (gloo, 2 processes): the engine's gradients equal one process's on the union batch, and a whole
`train_run` under two ranks keeps the replicas identical and writes only from rank 0.

Real data: the shipped PySCF demo molecules (structures of different sizes, so the loss normalisation across
ranks matters).
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from hambench.testing import TOL


MODEL = "deephe3"
PRESET = "tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup():
    if MODEL == "toy":
        import tempfile

        from _toy_model import register_toy

        register_toy(tempfile.gettempdir())


def _env(rank, world, port):
    _setup()
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def _grads(store_path, indices, out_files):
    """Gradients of one engine step on the structures ``indices`` (this process's share), for each loss of
    SETS (one model and one Trainer: the loss settings are swapped in between)."""
    from dataclasses import replace

    from hambench.training._data import collate
    from hambench.models.run import build_model, resolve_config
    from hambench.store._store import open_store
    from hambench.training import Trainer

    res = resolve_config(MODEL, PRESET, None, ["train.dtype=float64"])
    st = open_store(store_path)
    layout = st.layout
    model = build_model(res.spec, res.model, layout, "float64", seed=3)
    tr = Trainer(model, res.train, None, None, os.path.dirname(out_files[0]), {}, device="cpu")
    parts = [st.read_range(int(k), int(k) + 1, blocks=("H", "T")) for k in indices]
    batch = collate(parts, layout, dtype=torch.float64)
    for (loss, reduction), out in zip(SETS.values(), out_files):
        tr.cfg = replace(res.train, loss=loss, reduction=reduction)
        tr.backward(batch)
        torch.save({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, out)


SETS = {"mse-element": ("mse", "element"), "mse+mae-structure": ("mse+mae", "structure")}
SHARES = [[0, 3], [5, 8]]  # molecules of different sizes on the two ranks


def _worker(rank, world, port, store_path, tmp):
    """One spawn does all the DDP work (starting processes is the slow part): the gradients of both losses,
    then a whole train_run."""
    _env(rank, world, port)
    _grads(store_path, SHARES[rank], [os.path.join(tmp, f"{name}.grad{rank}.pt") for name in SETS])
    from hambench.models.run import train_run

    s = train_run(MODEL, store_path, os.path.join(tmp, "run"), preset=PRESET,
                  overrides={"train": {"max_steps": 2, "dtype": "float64"}}, device="cpu", quiet=True,
                  log=lambda m: None)
    torch.save(s, os.path.join(tmp, f"summary{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_run(demo_store, tmp_path_factory):
    _setup()
    store = str(demo_store)
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), store, str(tmp)), nprocs=2, join=True)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    _grads(store, SHARES[0] + SHARES[1], [str(tmp / f"{name}.single.pt") for name in SETS])  # one process
    torch.set_num_threads(n)
    return store, tmp


@pytest.mark.parametrize("name", list(SETS))
def test_ddp_gradients_equal_single_process(ddp_run, name):
    store, tmp = ddp_run
    g0, g1 = torch.load(tmp / f"{name}.grad0.pt"), torch.load(tmp / f"{name}.grad1.pt")
    ref = torch.load(tmp / f"{name}.single.pt")
    assert g0.keys() == ref.keys() and len(ref) > 0
    for n in ref:
        assert torch.equal(g0[n], g1[n]), n  # DDP all-reduced: both replicas hold the same gradient
        scale = float(ref[n].abs().max()) + 1e-30
        assert float((g0[n] - ref[n]).abs().max()) <= TOL.reassociation * scale, n  # float64: reassociation only


def test_train_run_under_two_ranks(ddp_run):
    from hambench.models.run import load_model
    from hambench.training import load_checkpoint, params_sha256

    _, tmp = ddp_run
    run = tmp / "run"
    ck = load_checkpoint(run / "last.pt")
    assert ck["world_size"] == 2 and ck["engine"]["step"] == 2
    s0, s1 = torch.load(tmp / "summary0.pt"), torch.load(tmp / "summary1.pt")
    assert s0["steps"] == s1["steps"] == 2
    assert s0["params_sha256"] == s1["params_sha256"]  # the replicas stayed identical
    assert params_sha256(load_model(run / "last.pt", dtype="float64")[0]) == s0["params_sha256"]
    files = sorted(p.name for p in run.iterdir())
    assert "metrics.jsonl" in files and not [f for f in files if f.endswith(".partial")]
