"""The ``hambench`` command line: thin — parse, call the library, report.

Conventions: commands that write take ``-o/--output``; errors are one line on stderr with a non-zero exit
(1 bad input: files, stores, values only a source can check; 2 usage: missing or malformed options);
``--debug`` shows tracebacks; long work shows a progress bar.

Each command imports the library module it calls inside its own body — the one lazy-import pattern of this
module — so ``hambench --help`` and ``prepare`` start without torch, and ``train`` without PySCF.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from hambench import __version__
from hambench.app._prepare_options import DRIVER_FIELDS as _DRIVER_FIELDS
from hambench.app._prepare_options import PrepareCommand as _PrepareCommand
from hambench.app._prepare_options import source_option_help, source_option_table  # noqa: F401 (tests, docs)
from hambench.errors import HambenchError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class _Group(click.Group):
    """Turns library errors into one clear line (traceback only with --debug), and a subcommand's usage errors
    (a missing or malformed option) into one line too, exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HambenchError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"hambench: error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            where = " ".join(["hambench", *(e.ctx.command_path.split()[1:] if e.ctx else [])])
            click.echo(f"hambench: error: {e.format_message()} (see '{where} -h')", err=True)
            sys.exit(e.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("hambench: interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # unexpected: still one line unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"hambench: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="hambench")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; print a summary line only.")
@click.pass_context
def main(ctx, debug, quiet):
    """hambench — benchmark suite for machine-learned electronic-structure Hamiltonians.

    \b
    Typical flow (from the repository root, with ../shared/realdata beside it):
      hambench prepare --source deeph/folder --input ../shared/realdata/deeph_new_MoTe2 -o mote2.zarr
      hambench info mote2.zarr
      hambench train deephe3 --data mote2.zarr --preset tiny -o runs/e3
      hambench predict runs/e3 --data mote2.zarr -o preds.zarr
      hambench score preds.zarr -o scores.json
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["quiet"] = quiet or not sys.stderr.isatty()


# --- prepare ---------------------------------------------------------------------------------------------
@main.command(cls=_PrepareCommand, context_settings=CONTEXT)
@click.option("--source", "-s", required=True, metavar="FAMILY/NAME",
              help="Data source, e.g. deeph/folder, deeph/bilayer_graphene, openmx/scfout, pyscf/qm9, "
                   "pyscf/outputs, pyscf/crystal, qh9/stable, abacus/csr, siesta/hsx. "
                   "`hambench prepare --list-sources` lists them.")
@click.option("--input", "-i", "input_path", type=click.Path(path_type=Path), help="Raw input file or folder.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output store (NAME.zarr).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output store.")
@click.option("--cutoff", type=click.FloatRange(min=0, min_open=True), help="Build edges with the neighbour list (Å) instead of the DFT block keys; "
                                          "DFT pairs beyond it are dropped (a warning with the counts).")
@click.option("--zero-fill", is_flag=True, help="With --cutoff: accept pairs the DFT file has no block for as zero "
                                               "blocks (refused without this flag).")
@click.option("--augment", type=click.IntRange(min=0), default=0, show_default=True,
              help="Add K rotation-augmented copies of every structure.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of rotations, sampling and displacements.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Local Dask worker processes.")
@click.option("--scheduler", metavar="ADDRESS", help="Address of a running dask.distributed scheduler.")
@click.option("--list-sources", is_flag=True, is_eager=True, expose_value=False,
              callback=lambda ctx, p, v: _list_sources(ctx) if v else None, help="List the sources and exit.")
@click.pass_context
def prepare(ctx, source, input_path, output, **options):
    """Convert raw DFT outputs into a chunked Zarr store of per-edge H/S blocks.

    The flags after --scheduler are the sources' own options (generated from each source's Options; the tag
    names the sources that take one). An option the chosen source does not have is refused.

    \b
    Examples:
      hambench prepare --source deeph/folder --input ../shared/realdata/deeph_legacy_MoTe2 -o mote2.zarr
      hambench prepare --source openmx/scfout --input ../shared/realdata/openmx_graphene_scfout -o graphene.zarr --augment 2
      hambench prepare --source pyscf/qm9 --limit 20 --max-atoms 9 -o qm9.zarr --workers 2
    """
    from hambench.pipelines import prepare as run_prepare
    from hambench.pipelines.registry import check_options

    if output is None:
        raise click.UsageError("missing option -o/--output")
    options = {k: v for k, v in options.items() if v is not None and v is not False}
    table = source_option_table()
    flags = {k: row["flag"] for k, row in table.items()} | {k: "--" + k for k in _DRIVER_FIELDS}
    check_options(source, {k: v for k, v in options.items() if k in flags}, flags=flags)  # refused as typed
    summary = run_prepare(source, input_path, output, quiet=ctx.obj["quiet"], **options)
    click.echo(summary)


def _list_sources(ctx):
    from hambench.pipelines import list_sources

    for name, doc in list_sources():
        click.echo(f"{name:28s} {doc}")
    ctx.exit(0)


# --- info ------------------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--checksum", is_flag=True, help="Print only the store's content checksum (sha256; what boards and "
              "checkpoints record).")
@click.option("--verify", is_flag=True, help="Check every shard file, offset, block size, finite value and edge "
              "pairing, and the content checksum against the sealed one; print the first damage (exit 1) or ok.")
def info(store, as_json, checksum, verify):
    """Summarise a store: structures, atoms, edges, species/orbitals, sizes, splits, provenance.

    \b
    Example:
      hambench info mote2.zarr
      hambench info mote2.zarr --verify
    """
    from hambench.store import open_store, store_checksum, verify_line, verify_store

    if verify:
        if checksum or as_json:
            raise click.UsageError("--verify goes alone (not with --checksum or --json)")
        click.echo(verify_line(verify_store(store)))
        return
    s = open_store(store)
    if checksum:
        click.echo(store_checksum(s))
        return
    click.echo(s.summary_json() if as_json else s.summary())


# --- export ----------------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["deeph", "deeph-legacy"]), default="deeph", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in the output folder.")
@click.pass_context
def export(ctx, store, fmt, output, overwrite):
    """Write a store back out in another ecosystem's format (one folder per structure).

    \b
    Example:
      hambench export graphene.zarr --format deeph -o graphene_deeph/
    """
    from hambench.pipelines.export import export_store

    click.echo(export_store(store, fmt, output, quiet=ctx.obj["quiet"], overwrite=overwrite))


# --- model zoo, scoring, leaderboard (later issues) ------------------------------------------------------
_KERNEL = click.option("--kernel", type=click.Choice(["e3nn", "fast"]),
                       help="Tensor-product kernel: fast (default) or e3nn (the reference); same results.")


@main.command(context_settings=CONTEXT)
@click.argument("model", metavar="MODEL")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Training store.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--config", type=click.Path(path_type=Path), help="YAML config overriding the model's defaults.")
@click.option("--preset", default=None, help="Named preset of the model's config (paper, tiny; default paper).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override one config field, e.g. --set train.lr=1e-3 --set model.num_blocks=2 (repeatable).")
@click.option("--split", help="Named split of the store: trains on NAME:train, validates on NAME:val.")
@click.option("--resume", is_flag=True, help="Continue the run in -o from its last.pt (same config).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), help="Floating-point precision of the run.")
@click.option("--max-epochs", type=click.IntRange(min=1), help="Stop after this many epochs.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many optimiser steps.")
@click.option("--seed", type=int, help="Seed of initialisation, shuffling, augmentation and splits.")
@click.option("--stage1", type=click.Path(path_type=Path),
              help="HarmoSE: the trained stage-1 checkpoint (deephe3 / tracegrad-deephe3 run or .pt).")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads of torch (default: torch's; 1 is fastest on a busy machine).")
@click.option("--allow-partial", is_flag=True,
              help="Train a model whose irreps cannot fill some block type of the store (refused otherwise); "
                   "its predictions and score name the unreachable parts.")
@_KERNEL
@click.pass_context
def train(ctx, model, data, output, config, preset, sets, split, resume, device, dtype, max_epochs, max_steps, seed,
          stage1, threads, allow_partial, kernel):
    """Train a model of the zoo (deephe3, qhnet, …) on a store; checkpoints and logs go to the run folder.

    \b
    Writes RUN/last.pt and RUN/best.pt (atomic), RUN/metrics.jsonl, RUN/config.json. Several GPUs or nodes:
      torchrun --nproc_per_node 4 -m hambench train deephe3 --data mote2.zarr -o runs/e3
    \b
    Example:
      hambench train deephe3 --data mote2.zarr --preset tiny -o runs/e3
      hambench train qhnet --data qm9.zarr --preset tiny --max-steps 200 -o runs/qh
      hambench train deephe3 --data mote2.zarr -o runs/e3 --resume --max-epochs 500
      hambench train harmose --data mote2.zarr --stage1 runs/e3 --preset tiny -o runs/hs
    """
    from hambench.models.run import train_run

    if max_epochs is not None and max_steps is not None:
        raise click.UsageError("give --max-epochs or --max-steps, not both")
    _set_threads(threads)
    if stage1 is not None:
        if not model.startswith("harmose"):
            raise click.UsageError("--stage1 is for the HarmoSE models (harmose, harmose-tracegrad)")
        sets = (*sets, f"model.stage1={stage1.resolve()}")
    if kernel is not None:
        sets = (*sets, f"model.kernel={kernel}")
    over = {k: v for k, v in {"max_epochs": max_epochs, "max_steps": max_steps, "seed": seed, "dtype": dtype,
                              "split": split}.items() if v is not None}
    if max_steps is not None:
        over["max_epochs"] = 1 << 30
    if max_epochs is not None:
        over["max_steps"] = None
    s = train_run(model, data, output, preset=preset, config_file=config, sets=sets,
                  overrides={"train": over} if over else None, resume=resume, device=device,
                  quiet=ctx.obj["quiet"], allow_partial=allow_partial)
    best = f"{s['best']:.4g}" if s["best"] == s["best"] and s["best"] != float("inf") else "n/a"
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one summary line
        click.echo(f"trained {model}: {s['steps']} steps, {s['epochs']} epochs ({s['reason']}), best val "
                   f"{best}, {s['structures_per_s']:.1f} structures/s, {s['seconds']:.1f} s → {output}")


@main.command(context_settings=CONTEXT)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Store whose structures are rotated.")
@click.option("--split", help="Only this subset of the store, NAME:SUBSET.")
@click.option("-n", "--structures", "n_structures", type=click.IntRange(min=1), default=4, show_default=True,
              help="Structures (the first originals of the store or split).")
@click.option("--rotations", type=click.IntRange(min=1), default=4, show_default=True,
              help="Seeded random rotations per structure.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the rotations.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float64", show_default=True,
              help="Precision of the measurement (float64 measures the architecture, not rounding).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the result as JSON.")
@_KERNEL
def equivariance(checkpoint, data, split, n_structures, rotations, seed, dtype, output, kernel):
    """Equivariance error of a trained model: max and mean |f(Rx) − D f(x) D^†| in meV over random rotations
    (HarmoSE: also relative to the mean |ΔH| of its stage 2, the part that is not equivariant by construction).

    \b
    Example:
      hambench equivariance runs/e3 --data mote2.zarr --rotations 8
    """
    from hambench.atomic import check_output, write_json
    from hambench.models.equivariance import checkpoint_equivariance

    if output is not None:
        check_output(output, folder=False, what="the JSON file to write")
    _use_kernel(kernel)
    r = checkpoint_equivariance(checkpoint, data, split, n_structures, rotations, seed, dtype)
    stage2 = ""
    if r["dH_scale_meV"] is not None:  # a two-stage model: the error against the size of its stage-2 correction
        rel = ("n/a: ΔH is zero" if r["relative_mean_dH"] is None else
               f"mean {r['relative_mean_dH']:.2g}, max {r['relative_max_dH']:.2g}")
        stage2 = f"; relative to mean |ΔH| of stage 2 {r['dH_scale_meV']:.3g} meV: {rel}"
    click.echo(f"{r['model']}: equivariance error max {r['max_meV']:.3g} meV, mean {r['mean_meV']:.3g} meV "
               f"(max relative {r['relative_max']:.2g} of mean |H| {r['scale_meV']:.3g} meV{stage2}; "
               f"{r['n_structures']} structures x {r['n_rotations']} rotations, {r['dtype']})")
    if output is not None:
        write_json(output, r, indent=2)


@main.command(context_settings=CONTEXT)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), help="Store to predict (its edges are kept).")
@click.option("--structures", type=click.Path(path_type=Path),
              help="ASE-readable structures (POSCAR, CIF, xyz; one or many frames) without DFT.")
@click.option("--split", help="Only this subset of the store, NAME:SUBSET (e.g. qh9-stable-id:test).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="preds.zarr")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Structures per forward pass.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads of torch (default: torch's).")
@click.option("--edge-chunk", type=click.IntRange(min=1), default=16384, show_default=True,
              help="With --structures: edges per slice of a DeepH-E3's per-edge work (bounds memory).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]),
              help="Precision of the forward pass (default: the checkpoint's training dtype).")
@_KERNEL
@click.pass_context
def predict(ctx, checkpoint, data, structures, split, output, device, batch_size, overwrite, threads, edge_chunk,
            dtype, kernel):
    """Predict Hamiltonian blocks with a trained checkpoint (a .pt file or a run folder: best.pt).

    \b
    --data: a prediction store with the truth's ids and edges, for `hambench score`.
    --structures: new structures; edges from the neighbour list with the cut-offs the checkpoint learned.
    \b
    Example:
      hambench predict runs/e3 --data mote2.zarr -o preds.zarr
      hambench predict runs/qh/best.pt --data qm9.zarr --split qh9-stable-id:test -o preds.zarr
      hambench predict runs/e3 --structures POSCAR -o new.zarr
    """
    from hambench.models.run import predict_store, predict_structures

    if (data is None) == (structures is None):
        raise click.UsageError("give exactly one of --data STORE or --structures FILE")
    _set_threads(threads)
    _use_kernel(kernel)
    if structures is not None:
        if split:
            raise click.UsageError("--split goes with --data")
        s = predict_structures(checkpoint, structures, output, device=device, batch_size=batch_size,
                               overwrite=overwrite, edge_chunk=edge_chunk, dtype=dtype,
                               say=None if ctx.obj["quiet"] else (lambda line: click.echo(line, err=True)))
    else:
        s = predict_store(checkpoint, data, output, split=split, device=device, batch_size=batch_size,
                          overwrite=overwrite, dtype=dtype)
    click.echo(f"predicted {s['structures']} structures in {s['seconds']:.2f} s "
               f"({s['structures_per_s']:.1f} structures/s) → {output}")


def _use_kernel(kernel):
    if kernel is not None:
        from hambench.models._fast_tp import use_kernel
        use_kernel(kernel)


def _set_threads(threads):
    if threads is not None:
        if threads < 1:
            raise click.UsageError("--threads must be >= 1")
        import torch

        torch.set_num_threads(threads)


@main.command(context_settings=CONTEXT)
@click.argument("preds", type=click.Path(path_type=Path))
@click.option("--truth", type=click.Path(path_type=Path), help="Truth store (default: the one recorded in PREDS).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="scores.json to write (atomically).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Local Dask worker processes.")
@click.option("--scheduler", metavar="ADDRESS", help="Address of a running dask.distributed scheduler.")
@click.option("--reference", type=click.Path(path_type=Path),
              help="scores.json of a reference run: also score this run on its worst structure and block.")
@click.option("--scf", type=click.IntRange(min=1), metavar="N",
              help="[molecules] SCF acceleration on N seeded test molecules (QH9).")
@click.option("--bands", is_flag=True, help="[crystals] band-energy errors along a k-path.")
@click.option("--kpath", type=click.Path(path_type=Path), help="[crystals] DeepH-dock K_PATH file (implies --bands).")
@click.option("--plots", type=click.Path(path_type=Path), metavar="DIR", help="Write PNG + SVG plots here.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of the table.")
@click.option("--all", "all_metrics", is_flag=True,
              help="Every metric of scores.json in the table (default: the main ones).")
@click.pass_context
def score(ctx, preds, truth, output, workers, scheduler, reference, scf, bands, kpath, plots, as_json, all_metrics):
    """Score predictions: MAE of H (meV / µEh), ε, ψ, SCF acceleration, bands.

    \b
    Examples:
      hambench score preds.zarr -o scores.json
      hambench score preds.zarr --truth test.zarr --workers 2 --reference baseline_scores.json
      hambench score qm9_preds.zarr --scf 50 --plots plots/ -o scores.json
    """
    from hambench.scoring._score import score as run_score
    from hambench.scoring._console import make_console
    from hambench.scoring._score import summary_lines, tables

    scores = run_score(preds, truth, output, workers=workers, scheduler=scheduler, reference=reference, scf=scf,
                       bands=bands, kpath=kpath, plots=plots, quiet=ctx.obj["quiet"])
    if as_json:
        click.echo(json.dumps(scores["metrics"], indent=1, ensure_ascii=False))
        return
    console = make_console()  # at most 100 columns: the subsets wrap into several tables
    for t in tables(scores, all_metrics, console.width):
        console.print(t)
    for line in summary_lines(scores):
        click.echo(line)
    if output is not None:
        click.echo(f"wrote {output}")


@main.command(context_settings=CONTEXT)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True,
              help="Folder for the demo's outputs (a rerun reuses what is there).")
@click.option("--budget", type=click.Choice(["full", "ci"]), default="full", show_default=True,
              help="full: the README's main job; ci: a few training steps and one SCF molecule (tests).")
@click.pass_context
def demo(ctx, output, budget):
    """The main job on the embedded demo molecules: prepare, train qhnet and tracegrad-qhnet, predict, score,
    submit to a local leaderboard and build its site.

    \b
    Example:
      hambench demo -o demo_out
      hambench demo -o /tmp/demo --budget ci
    """
    from hambench.app.demo import run_demo

    run_demo(output, quiet=ctx.obj["quiet"], budget=budget)


# the commands that analyse and share results live in their own module; importing it registers them on ``main``
from hambench.app import _cli_results  # noqa: E402,F401
from hambench.app import _cli_models  # noqa: E402,F401  (import-checkpoint)


def _set_quiet(ctx, _param, value) -> None:
    if value:
        ctx.ensure_object(dict)["quiet"] = True


def _accept_quiet(group: click.Group) -> None:
    """``-q/--quiet`` after any subcommand means what it means before it (``hambench train … -q``)."""
    for cmd in group.commands.values():
        if isinstance(cmd, click.Group):
            _accept_quiet(cmd)
        if not any("--quiet" in getattr(p, "opts", ()) for p in cmd.params):
            cmd.params.append(click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_set_quiet,
                                           help="No progress bars; print a summary line only (as hambench -q)."))


_accept_quiet(main)

if __name__ == "__main__":  # pragma: no cover
    main()
