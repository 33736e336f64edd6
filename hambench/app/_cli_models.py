"""The ``hambench`` commands that bring models in from elsewhere: ``import-checkpoint``. Importing this module
registers them on :data:`hambench.app.cli.main` (``cli`` imports it). Like ``cli``, each command imports the
library module it calls inside its body.
"""

from __future__ import annotations

from pathlib import Path

import click

from hambench.app.cli import CONTEXT, main

__all__ = ["import_checkpoint", "FORMATS"]

#: FORMAT → what PATH is
FORMATS = {
    "deephe3": "a DeepH-E3 training output folder (best_model.pkl, src/train.ini, src/dataset_info.json)",
    "airs-qhnet": "a QHNet state dict as divelab/AIRS's QH9 code saves it",
}


@main.command("import-checkpoint", context_settings=CONTEXT)
@click.argument("fmt", metavar="FORMAT", type=click.Choice(sorted(FORMATS)))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The hambench run folder to write (new or empty).")
@click.option("--data", type=click.Path(path_type=Path),
              help="The store the run belongs to (its elements, edges, checksum; needed by deephe3).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]),
              help="Precision of the run (default: the checkpoint's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="airs-qhnet: a hyper-parameter other than QH9's (repeatable).")
def import_checkpoint(fmt, path, output, data, dtype, sets):
    """Turn a reference code's checkpoint into a hambench run folder (predict, score, equivariance and
    train --resume take it).

    \b
    FORMAT deephe3:    PATH = a DeepH-E3 training output folder (best_model.pkl + src/)
    FORMAT airs-qhnet: PATH = a QHNet state dict saved by divelab/AIRS's QH9 code
    \b
    Example:
      hambench import-checkpoint deephe3 runs/2023-01-01_12-00-00 --data mote2.zarr -o runs/e3-imported
      hambench predict runs/e3-imported --data mote2.zarr -o preds.zarr
    """
    if fmt == "deephe3":
        if sets:
            raise click.UsageError("--set goes with airs-qhnet (deephe3 reads its config from src/train.ini)")
        from hambench.models._import_deephe3 import import_deephe3

        r = import_deephe3(path, output, data=data, dtype=dtype)
        click.echo(f"imported DeepH-E3 {r['source']} ({r['parameters']:,} parameters, {r['dtype']}) → {output}")
        return
    from hambench.config import parse_set
    from hambench.models._import_airs import import_airs_qhnet

    import_airs_qhnet(path, output, overrides=parse_set(sets), data=data, dtype=dtype)
    click.echo(f"imported AIRS QHNet {path} → {output}")
