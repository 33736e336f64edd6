"""The ``hambench`` commands that analyse and share results: ``leaderboard init|submit|list|build``, ``bands`` and
``structures twist``. Importing this module registers them on :data:`hambench.app.cli.main` (``cli`` imports it).
Like ``cli``, each command imports the library module it calls inside its body.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from hambench.app.cli import CONTEXT, _Group, main


_BOARD_OPTION = click.option("--board", type=click.Path(path_type=Path),
                             help="Board folder (datasets.yml + submissions/); default: the repository's leaderboard/.")


@main.group(cls=_Group, context_settings=CONTEXT)
def leaderboard():
    """The leaderboard: make a board, submit predictions (scores recomputed by hambench), list, build the site.

    \b
    Example:
      hambench leaderboard init --board myboard --dataset demo --truth demo.zarr
      hambench leaderboard submit preds.zarr --meta meta.yml --board myboard/
      hambench leaderboard list --board myboard/
      hambench leaderboard build --board myboard/ -o site/
    """


@leaderboard.command("init", context_settings=CONTEXT)
@click.option("--board", type=click.Path(path_type=Path), required=True, help="Board folder (made if missing).")
@click.option("--dataset", required=True, help="Dataset key on the board (letters, digits, . _ + -).")
@click.option("--truth", type=click.Path(path_type=Path), required=True, help="The dataset's truth store.")
@click.option("--split", help="Test subset NAME:SUBSET of the truth store (default: every structure).")
@click.option("--scf", type=click.IntRange(min=1), help="Score SCF acceleration on N molecules (molecule data sets).")
@click.option("--title", help="The dataset's title on the site.")
def leaderboard_init(board, dataset, truth, split, scf, title):
    """Create a board (or add a dataset to one) for a truth store, and a meta.yml template to fill in.

    \b
    Example:
      hambench leaderboard init --board myboard --dataset demo --truth demo.zarr --scf 1
    """
    from hambench.leaderboard.init import init_board

    click.echo(init_board(board, dataset, truth, split=split, scf=scf, title=title))


@leaderboard.command("submit", context_settings=CONTEXT)
@click.argument("preds", type=click.Path(path_type=Path))
@click.option("--meta", "meta", type=click.Path(path_type=Path), required=True, help="The submission's meta.yml.")
@_BOARD_OPTION
@click.option("--truth", type=click.Path(path_type=Path), help="Truth store (default: the board's, else PREDS').")
@click.option("--scores", "claimed", type=click.Path(path_type=Path),
              help="A scores.json you computed; refused unless hambench recomputes the same metrics.")
@click.option("--replace", is_flag=True, help="Replace this model's existing submission on the dataset.")
@click.option("--no-plots", is_flag=True, help="Skip the per-block heat maps and parity plots.")
def leaderboard_submit(preds, meta, board, truth, claimed, replace, no_plots):
    """Validate a submission, recompute its scores from PREDS and record it on the board.

    \b
    Example:
      hambench leaderboard submit preds.zarr --meta meta.yml --board myboard/
    """
    from hambench.leaderboard.submit import submit

    _, line = submit(preds, meta, board=board, truth=truth, claimed=claimed, replace=replace, plots=not no_plots)
    click.echo(line)


@leaderboard.command("list", context_settings=CONTEXT)
@_BOARD_OPTION
@click.option("--all", "all_columns", is_flag=True, help="Every column of the site (default: the headline ones).")
def leaderboard_list(board, all_columns):
    """List the board's submissions, one table per dataset, ranked (at most 100 columns wide).

    \b
    Example:
      hambench leaderboard list --board myboard/ --all
    """
    from hambench.leaderboard.listing import print_board

    print_board(board, all_columns=all_columns)


@leaderboard.command("build", context_settings=CONTEXT)
@_BOARD_OPTION
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Site folder: new, empty, or a site built before (replaced whole).")
@click.option("--overwrite", is_flag=True, help="Replace -o even if it is a file or a folder this command did not build.")
@click.option("--predictions", "predictions", type=click.Path(path_type=Path), multiple=True, metavar="DIR",
              help="Folder of prediction stores (by the names the records give): those found are scored again and "
                   "must give the recorded scores (repeatable).")
@click.option("--strict", is_flag=True, help="Refuse a submission whose recorded predictions --predictions lacks.")
def leaderboard_build(board, output, overwrite, predictions, strict):
    """Build the static leaderboard site (works offline: sortable tables, model pages, plots, JSON/CSV).

    Every submission is checked against its record first (record.json: its files' digests, the truth's and
    predictions' checksums); a board edited by hand is refused.

    \b
    Example:
      hambench leaderboard build --board myboard/ -o site/
      hambench leaderboard build --board myboard/ -o site/ --predictions preds/ --strict
    """
    from hambench.leaderboard.site import build_site

    click.echo(build_site(board, output, overwrite=overwrite, predictions=predictions, strict=strict))


#: the plot formats ``bands --plot`` writes (matplotlib's, chosen by the suffix)
_PLOT_SUFFIXES = (".png", ".pdf", ".svg")


@main.command(context_settings=CONTEXT)
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--structure", help="Structure id or index (default: the first).")
@click.option("--kpath", type=click.Path(path_type=Path), help="DeepH K_PATH file (default: ASE's path of the cell).")
@click.option("--npoints", type=click.IntRange(min=2), default=60, show_default=True,
              help="k-points along ASE's path (without --kpath).")
@click.option("--around-fermi", "n", type=click.IntRange(min=1), default=20, show_default=True,
              help="Number of bands nearest the Fermi level.")
@click.option("--fermi", type=float, help="Fermi level (eV) when the store has none (large structures).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the bands as JSON.")
@click.option("--plot", type=click.Path(path_type=Path), help="Write the band plot (PNG/PDF/SVG).")
@click.pass_context
def bands(ctx, store, structure, kpath, npoints, n, fermi, output, plot):
    """Bands near the Fermi level of one structure of STORE (a store, or predictions with their truth's S), from
    sparse H(k), S(k) by shift-invert: for structures too large for a dense eigensolver.

    \b
    Example:
      hambench bands mote2.zarr --around-fermi 10 --plot bands.png
    """
    from hambench.atomic import check_output, write_json
    from hambench.scoring import plot_sparse_bands, sparse_band_structure

    if fermi is not None and not math.isfinite(fermi):
        raise click.UsageError(f"--fermi must be a finite energy (eV), got {fermi}")
    if output is not None:
        check_output(output, folder=False, what="the JSON file to write")
    if plot is not None:
        check_output(plot, folder=False, flag="--plot", what="the plot file to write")
        if plot.suffix.lower() not in _PLOT_SUFFIXES:
            raise click.UsageError(f"--plot {plot}: the suffix names the format: {', '.join(_PLOT_SUFFIXES)}")

    def progress(k, nk, seconds):
        if not ctx.obj["quiet"] and (k == nk or k % max(1, nk // 10) == 0):
            click.echo(f"  k-point {k}/{nk} ({seconds / k:.2f} s per k-point)", err=True)

    res = sparse_band_structure(store, structure, kpath, npoints, n, fermi, progress)
    b = res["bands"] - res["fermi"]
    click.echo(f"{res['source']}: {res['atoms']:,} atoms, {res['orbitals']:,} orbitals; E_F = {res['fermi']:.4f} eV "
               f"({res['fermi_from']}); {b.shape[1]} bands nearest E_F at {len(b)} k-points "
               f"({res['seconds_per_k']:.2f} s per k-point)")
    ticks = dict(res["kpath"].ticks)
    for i in sorted(set(ticks) | {0, len(b) - 1}):
        below, above = b[i][b[i] <= 0], b[i][b[i] > 0]
        click.echo(f"  k {i:4d} {ticks.get(i, ''):>3s}  highest below E_F {below.max() if below.size else float('nan'):+.4f} eV"
                   f"   lowest above {above.min() if above.size else float('nan'):+.4f} eV")
    if output is not None:
        write_json(output, {"source": res["source"], "fermi_eV": res["fermi"], "fermi_from": res["fermi_from"],
                            "kpath": res["kpath"].to_dict(), "kpts": res["kpath"].kpts.tolist(),
                            "bands_eV": res["bands"].tolist(), "seconds_per_k": res["seconds_per_k"]}, indent=1)
        click.echo(f"wrote {output}")
    if plot is not None:
        plot_sparse_bands(res, plot)
        click.echo(f"wrote {plot}")


@main.group(cls=_Group, context_settings=CONTEXT)
def structures():
    """Build structures to predict (no DFT needed): twisted bilayers of 2-D crystals.

    \b
    Example:
      hambench structures twist POSCAR --m 31 --n 32 -o tblg.vasp
    """


@structures.command("twist", context_settings=CONTEXT)
@click.argument("layer", type=click.Path(path_type=Path))
@click.option("--m", "m", type=int, required=True, help="First integer of the commensurate pair (m, n).")
@click.option("--n", "n", type=int, required=True, help="Second integer (twist angle: cos θ = (m²+4mn+n²)/(2(m²+mn+n²))).")
@click.option("--distance", type=float, default=3.35, show_default=True,
              help="Gap (Å) between the top atom of layer 1 and the bottom atom of layer 2.")
@click.option("--vacuum", type=float, help="Empty space (Å) along z (default: the layer file's).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output structure file (POSCAR/.vasp, .cif, .xyz: format from the name).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def structures_twist(layer, m, n, distance, vacuum, output, overwrite):
    """The commensurate twisted bilayer of a hexagonal 2-D crystal: two copies of LAYER (a POSCAR/CIF/xyz of one
    layer, vacuum along z), the second rotated by the angle of (m, n); prints its atom count and angle.

    \b
    Example:
      hambench structures twist ../shared/realdata/deeph_new_MoTe2/POSCAR --m 1 --n 2 -o mote2_tw.vasp
    """
    from hambench.pipelines.twist import write_twist

    click.echo(write_twist(layer, m, n, output, distance=distance, vacuum=vacuum, overwrite=overwrite))
