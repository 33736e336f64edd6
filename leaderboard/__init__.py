"""hambench.leaderboard: submissions validated by a schema, scores recomputed by hambench, a static site.

``board`` (the folder layout), ``schema`` (meta.yml / datasets.yml), ``submit`` (validate, recompute, record),
``record`` (record.json: what seals a submission), ``verify`` (scores derived again from the predictions),
``site`` (the static site), ``listing`` (the terminal table), ``columns`` (labels and better directions).
"""

if __name__ != "hambench.leaderboard":  # the folder installs as hambench.leaderboard, never as a top-level package
    raise ImportError(f"{__name__!r} is the folder of hambench.leaderboard: import hambench.leaderboard (DESIGN.md §2)")

from .board import DEFAULT_BOARD, Board, Dataset, Submission, open_board
from .schema import validate_datasets, validate_meta
from .site import build_site
from .submit import submit

__all__ = ["DEFAULT_BOARD", "Board", "Dataset", "Submission", "open_board", "validate_meta", "validate_datasets",
           "build_site", "submit"]
