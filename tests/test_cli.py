"""The command line: help and version, one-line errors with exit codes, prepare + info end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hambench import __version__
from hambench.cli import main

COMMANDS = ["prepare", "train", "predict", "score", "leaderboard", "demo", "info", "export"]


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_help_lists_every_command():
    r = run("--help")
    assert r.exit_code == 0
    for c in COMMANDS:
        assert c in r.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_example(command):
    r = run(command, "--help")
    assert r.exit_code == 0, r.output
    assert "Example" in r.output and "hambench " + command.split()[0] in r.output


@pytest.mark.parametrize(
    "args",
    [
        ["train", "deephe3", "--data", "x.zarr", "-o", "run"],
        ["predict", "run", "--data", "x.zarr", "-o", "p.zarr"],
        ["score", "p.zarr"],
        ["leaderboard", "build", "-o", "site"],
    ],
)
def test_later_commands_fail_clearly(args):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 3
    assert r.output.count("\n") == 1 and "hambench: error:" in r.output


def test_unknown_source_is_one_line_exit_1(tmp_path):
    r = CliRunner().invoke(main, ["prepare", "--source", "nope/x", "-o", str(tmp_path / "o.zarr")])
    assert r.exit_code == 1 and "unknown source 'nope/x'" in r.output and r.output.count("\n") == 1


def test_usage_error_exit_2():
    r = CliRunner().invoke(main, ["prepare"])
    assert r.exit_code == 2


def test_named_dataset_without_input_says_where_to_download(tmp_path):
    r = CliRunner().invoke(main, ["prepare", "--source", "deeph/bilayer_graphene", "-o", str(tmp_path / "o.zarr")])
    assert r.exit_code == 1 and "zenodo" in r.output.lower() and "--input" in r.output
    assert not (tmp_path / "o.zarr").exists()


def test_prepare_then_info(tmp_path):
    out = tmp_path / "s.zarr"
    r = run("-q", "prepare", "--source", "synthetic/random", "-o", str(out), "--augment", "1", "--seed", "3")
    assert r.exit_code == 0 and "wrote" in r.output
    r = run("info", str(out), "--json")
    d = json.loads(r.output)
    assert d["structures"] == 16 and d["augmented"] == 8
    r = run("info", str(out))
    assert "hambench store v1" in r.output


def test_info_on_missing_store():
    r = CliRunner().invoke(main, ["info", "/nonexistent/x.zarr"])
    assert r.exit_code == 1 and "no such store" in r.output


def test_list_sources():
    r = run("prepare", "--list-sources")
    assert r.exit_code == 0
    for s in ("deeph/folder", "openmx/scfout", "pyscf/qm9", "synthetic/random"):
        assert s in r.output


def test_console_script_and_core_import():
    out = subprocess.run([sys.executable, "-c", "import hambench._core as c; print(c.__version__)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == __version__
    out = subprocess.run([sys.executable, "-m", "hambench", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "prepare" in out.stdout


def test_demo_runs_on_embedded_data(tmp_path):
    r = run("-q", "demo", "-o", str(tmp_path / "demo"))
    assert r.exit_code == 0, r.output
    assert "30 structures" in r.output and "re-read and validated" in r.output
    from hambench.store import open_store

    st = open_store(tmp_path / "demo" / "qm9_demo.zarr")
    assert st.attrs["kind"] == "molecule" and st.attrs["dft"]["functional"] == "b3lyp5"
