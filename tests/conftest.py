"""Set-up shared by every test module."""

from __future__ import annotations

import pytest

import _train_data


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread for the whole suite: on the 2-core test machines OpenMP's spinning threads made e3nn steps
    ~30x slower (measured on the shared box), and tiny models gain nothing from a second thread."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """Path of the demo molecules' store — the 10 QM9 molecules with ≤ 3 heavy atoms, real B3LYP/def2-SVP labels
    from the shipped cache (no DFT run) — built once per session. Read-only: a test that changes a store copies it."""
    return _train_data.demo_store(tmp_path_factory)
