"""The metric catalogue: every number hambench reports, with its unit, label, definition and better direction.

One :class:`Metric` per key of scores.json's ``metrics`` (flat snake_case). Everything that shows or ranks a
metric reads it from here: the units and definitions ``hambench score`` writes, the order of its console table,
the leaderboard's columns (label, tooltip, better direction, the terminal listing's headline columns) and the
check of numbers a submitter states (wall times are measured, not recomputed). :data:`CATALOGUE` is in display
order. Keys it does not know (a hand-written board, a future metric) get a unit from the scores and a direction
from their name (:func:`better_of`).

Only accuracy metrics are ranked (a best value marked): parameter counts, facts and wall times never are. Wall
times are *load-dependent*: measured on the submitter's hardware under whatever else ran there, so they say how
long one run took, not how fast a method is (:func:`is_load_dependent`).

Units: eV inside hambench; reported H-like errors in meV (and their µEh twins, ``<key>_uEh``, for molecules),
cosines and ratios dimensionless (``"1"``), TraceGrad labels in eV², wall times in s, counts in what they count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hambench.basis._conventions import HARTREE_EV

__all__ = ["Metric", "CATALOGUE", "TOPICS", "ROLES", "SCF_GUESSES", "EV_TO_MEV", "EV_TO_UEH", "TWIN_SUFFIX",
           "metric", "units_of", "definitions_of", "console_keys", "headline_keys", "better_of", "label_of",
           "is_timing", "is_ranked", "is_load_dependent", "describe"]

EV_TO_MEV = 1e3
EV_TO_UEH = 1e6 / HARTREE_EV
#: the µEh twin of a molecule metric in meV: ``H_mae`` → ``H_mae_uEh``
TWIN_SUFFIX = "_uEh"
#: the baseline initial guesses of the SCF acceleration (QH9: PySCF's ``minao`` and ``1e``)
SCF_GUESSES = ("minao", "1e")

TOPICS = ("H", "orbitals", "per-structure", "per-block", "SCF", "bands", "equivariance")
#: ``accuracy``: a function of the predictions (recomputed, ranked); ``timing``: a measured wall time (recorded as
#: measured, never compared); ``fact``: about the data or the run (counts, spreads, baselines; never ranked)
ROLES = ("accuracy", "timing", "fact")
_KINDS = ("molecule", "crystal")
_BOTH = _KINDS
_MOL = ("molecule",)
_CRY = ("crystal",)


@dataclass(frozen=True)
class Metric:
    """What hambench knows about one reported number.

    Parameters
    ----------
    key : the flat snake_case name in scores.json ``metrics``
    unit : its unit (``"meV"``, ``"µEh"``, ``"1"``, ``"s"``, ``"molecules"``, …)
    topic : one of :data:`TOPICS`
    better : ``"lower"``, ``"higher"``, or ``""`` for a number never ranked
    role : one of :data:`ROLES`
    label : the tables' column header (empty: derived from the key, see :func:`label_of`)
    description : one line, the leaderboard's tooltip
    definition : the exact definition recorded in scores.json (empty: none recorded)
    console : store kinds whose ``hambench score`` table shows it
    headline : a column of the leaderboard's headline table (site and ``hambench leaderboard list``)
    """

    key: str
    unit: str
    topic: str
    better: str
    role: str = "accuracy"
    label: str = ""
    description: str = ""
    definition: str = ""
    console: tuple[str, ...] = ()
    headline: bool = False

    def __post_init__(self):
        if self.topic not in TOPICS or self.role not in ROLES or self.better not in ("lower", "higher", ""):
            raise ValueError(f"metric {self.key!r}: topic {self.topic!r}, role {self.role!r}, better {self.better!r}")
        if (self.role == "accuracy") != (self.better != "") and self.role != "timing":
            raise ValueError(f"metric {self.key!r}: an accuracy metric is ranked, a fact never ({self.better!r})")
        if not set(self.console) <= set(_KINDS):
            raise ValueError(f"metric {self.key!r}: console kinds {self.console}")
        if not self.label:
            object.__setattr__(self, "label", _label_from_key(self.key))

    @property
    def ranked(self) -> bool:
        """Whether a best value is marked: accuracy metrics only (never facts, counts or wall times)."""
        return self.role == "accuracy" and self.better != ""

    @property
    def load_dependent(self) -> bool:
        """Whether the number depends on the machine and its load (wall times)."""
        return self.role == "timing"


def _label_from_key(key: str) -> str:
    label = key.replace("_", " ")
    return re.sub(r"\beps\b", "ε", re.sub(r"\bpsi\b", "ψ", label))


def _mev(key, topic, label="", description="", definition="", console=(), twin=False, **kw) -> list[Metric]:
    """An H-like error in meV (lower is better), with its µEh twin when ``twin`` (molecules)."""
    out = [Metric(key, "meV", topic, "lower", label=label, description=description, definition=definition,
                  console=console, **kw)]
    if twin:
        out.append(Metric(key + TWIN_SUFFIX, "µEh", topic, "lower", label=out[0].label,
                          description=f"{description} (in µEh)" if description else ""))
    return out


def _fact(key, unit, topic, label, description) -> Metric:
    return Metric(key, unit, topic, "", role="fact", label=label, description=description)


def _h_metrics() -> list[Metric]:
    return [
        *_mev("H_mae", "H", "H MAE", "mean absolute error of the Hamiltonian matrix elements (mean over structures)",
              "per structure mean |ΔH| over all elements of all stored edges (molecules: the full n_ao×n_ao "
              "matrix), then the mean over structures; SOC elements by complex modulus", _BOTH, twin=True,
              headline=True),
        *_mev("H_mae_onsite", "H", "H MAE on-site", "MAE of the on-site (i = j, R = 0) blocks",
              "per molecule mean |ΔH| over the on-site blocks, then the mean (QH9)", _MOL, twin=True),
        *_mev("H_mae_offsite", "H", "H MAE off-site", "MAE of the hopping blocks",
              "per molecule mean |ΔH| over the off-site blocks (all ordered pairs i≠j), then the mean", _MOL,
              twin=True),
        *_mev("H_mae_pooled", "H", "H MAE pooled", "MAE over all matrix elements of all structures together",
              "mean |ΔH| over all elements of all structures at once", _CRY),
        *_mev("H_mae_reim", "H", "H MAE Re/Im", "MAE of real and imaginary parts (spin-orbit stores)",
              "as H_mae with Re and Im of each SOC element counted as two elements", _CRY),
        *_mev("H_mae_reim_pooled", "H", "H MAE Re/Im pooled", "as H MAE Re/Im, pooled over all elements at once"),
    ]


def _orbital_metrics() -> list[Metric]:
    return [
        *_mev("eps_mae", "orbitals", "ε MAE", "MAE of the occupied orbital energies",
              "per molecule MAE of the occupied orbital energies (canonical orthogonalisation with the true S, "
              "eigenvalues of S clamped at 1e-8, n_occ = ΣZ/2; a non-symmetric prediction is symmetrised, "
              "(H + Hᵀ)/2, before diagonalising, where QH9's code reads one triangle), then the mean (QH9)", _MOL,
              twin=True, headline=True),
        *_mev("homo_mae", "orbitals", "HOMO MAE", "MAE of the HOMO energy",
              "per molecule |ΔE| of orbital n_occ (orbitals as for ε MAE), then the mean", _MOL, twin=True),
        *_mev("lumo_mae", "orbitals", "LUMO MAE", "MAE of the LUMO energy",
              "per molecule |ΔE| of orbital n_occ + 1 (none without virtual orbitals), then the mean", _MOL,
              twin=True),
        *_mev("gap_mae", "orbitals", "gap MAE", "MAE of the HOMO-LUMO gap",
              "per molecule |Δ(E_LUMO − E_HOMO)|, then the mean", _MOL, twin=True),
        Metric("psi", "1", "orbitals", "higher", label="ψ",
               description="cosine similarity of the occupied orbital coefficients (1 = exact; depends on the "
                           "eigensolver inside degenerate levels)",
               definition="per molecule mean over the n_occ occupied orbitals of |cos| between the predicted and "
                          "true MO coefficient vectors (plain dot product, not S-weighted), orbitals as for ε MAE "
                          "(the symmetrised prediction), then the mean (QH9). Inside a degenerate occupied level any "
                          "rotation of the eigenvectors is an equally valid answer and eigensolvers differ in the "
                          "one they return, so ψ depends on the eigensolver there (acetylene's π pair, QM9 4, with a "
                          "seeded 10 meV perturbation: ψ 0.928 with NumPy's eigh, 0.869 with torch's, anywhere in "
                          "0.71–0.93 over the bases of the pair; psi_subspace 0.99996 for all); psi_subspace does not",
               console=_MOL, headline=True),
        Metric("psi_subspace", "1", "orbitals", "higher", label="ψ subspace",
               description="overlap of the occupied orbital spaces (1 = exact; independent of the eigensolver)",
               definition="per molecule ‖C_trueᵀ S C_pred‖_F² / n_occ, where C_true and C_pred are the n_occ "
                          "occupied coefficient columns of ψ (the same float64 matrices: canonical "
                          "orthogonalisation with the true S, so Cᵀ S C = I) and S the true overlap: the mean squared "
                          "cosine of the principal angles between the occupied subspaces; 1 when they coincide, "
                          "invariant to any rotation within the occupied space and hence to the eigensolver's "
                          "basis inside degenerate levels; then the mean over molecules", console=_MOL),
    ]


def _worst_and_gauge_metrics() -> list[Metric]:
    return [
        *_mev("H_mae_max", "per-structure", "worst structure",
              "largest per-structure H MAE (the structure in the tooltip)",
              "H_mae of the worst structure (H_mae_max_id)", _BOTH),
        *_mev("H_mae_block_max", "per-block", "worst block",
              "largest per-block MAE (element pair and shell pair in the tooltip)",
              "the worst basic block (element pair × shell pair): per structure mean |ΔH_b| over its edges of that "
              "pair, then the mean over structures having b", _BOTH),
        *_mev("H_mae_gauge", "H", "H MAE gauge-fixed", "H MAE after removing the best uniform shift μS",
              "as H_mae after removing μS per structure, μ = ⟨ΔH,S⟩/⟨S,S⟩ (S⊗I₂ for SOC)", _BOTH),
        *_mev("H_mae_gauge_pooled", "H", "H MAE gauge-fixed pooled", "gauge-fixed H MAE pooled over all elements"),
        *_mev("H_mae_gauge_max", "per-structure", "worst structure gauge-fixed",
              "largest per-structure gauge-fixed H MAE", console=_CRY),
        _fact("gauge_mu_mean", "meV", "H", "gauge shift μ",
              "mean over structures of the best uniform shift μ (ΔH ≈ μS); a fact about the prediction, not ranked"),
        *_mev("H_mae_max_on_reference", "per-structure", "on reference's worst structure",
              "this run's H MAE on the worst structure of the --reference run",
              "this run's H_mae on the reference run's worst structure (--reference)", console=_BOTH),
        *_mev("H_mae_block_max_on_reference", "per-block", "on reference's worst block",
              "this run's block MAE on the worst block of the --reference run",
              "this run's block MAE on the reference run's worst block (--reference)", console=_BOTH),
    ]


def _scf_metrics() -> list[Metric]:
    """SCF acceleration (:mod:`hambench.scoring._scf`): the ranked ratios first, then the run's facts and times."""
    out: list[Metric] = []
    for g, what in zip(SCF_GUESSES, ("minao", "the 1e guess")):
        out += [
            Metric(f"scf_achieved_ratio_{g}", "1", "SCF", "lower", label=f"SCF cycles ratio ({g})",
                   description=f"SCF cycles from the predicted H / from {what} (mean over molecules; below 1 saves "
                               "cycles)", console=_MOL, headline=g == SCF_GUESSES[0]),
            Metric(f"scf_error_level_ratio_{g}", "1", "SCF", "higher", label=f"SCF error-level ratio ({g})",
                   description=("cycles minao needs to reach the model's error / minao's total (higher better)"
                                if g == "minao" else f"as for minao, with {what}"), console=_MOL),
        ]
    out.append(Metric("scf_cycles_model", "cycles", "SCF", "lower", label="SCF cycles",
                      description="mean SCF cycles from the predicted H", console=_MOL))
    out.append(Metric("scf_n_molecules", "molecules", "SCF", "", role="fact", label="SCF molecules",
                      description="molecules of the SCF test (a seeded draw)", console=_MOL))
    for g in SCF_GUESSES:
        out += [
            Metric(f"scf_cycles_{g}", "cycles", "SCF", "", role="fact", label=f"SCF cycles from {g}",
                   description=f"mean SCF cycles from the {g} guess (the baseline)", console=_MOL),
            Metric(f"scf_optimal_ratio_{g}", "1", "SCF", "", role="fact", label=f"optimal ratio ({g})",
                   description=f"mean of 1 / cycles from {g}: the cycles ratio of a prediction that needs one cycle",
                   console=_MOL),
            _fact(f"scf_optimal_ratio_{g}_std", "1", "SCF", f"optimal ratio ({g}) std",
                  "population standard deviation over the molecules"),
            _fact(f"scf_achieved_ratio_{g}_std", "1", "SCF", f"SCF cycles ratio ({g}) std",
                  "population standard deviation over the molecules"),
            _fact(f"scf_error_level_ratio_{g}_std", "1", "SCF", f"SCF error-level ratio ({g}) std",
                  "population standard deviation over the molecules"),
            Metric(f"scf_n_error_level_unreached_{g}", "molecules", "SCF", "", role="fact",
                   label=f"error level unreached ({g})",
                   description=f"molecules whose {g} run never reached the model's error (counted as ratio 1)",
                   console=_MOL),
            Metric(f"scf_t1_{g}_s", "s", "SCF", "", role="timing", label=f"DFT time from {g} (t1)",
                   description=f"wall time of the DFT from the {g} guess (guess + SCF, grid set-up included), mean "
                               "per molecule", console=_MOL),
        ]
    out += [
        Metric("scf_n_unconverged", "molecules", "SCF", "", role="fact", label="SCF unconverged",
               description="molecules with an SCF run (any guess) that did not converge", console=_MOL),
        Metric("scf_t2_s", "s", "SCF", "lower", role="timing", label="inference time (t2)",
               description="model inference per molecule (the prediction store's recorded timing)", console=_MOL),
        Metric("scf_t_dft_model_s", "s", "SCF", "lower", role="timing", label="DFT time from model",
               description="wall time of the DFT from the model's guess (D0 + SCF), mean per molecule",
               console=_MOL),
        Metric("scf_t3_s", "s", "SCF", "lower", role="timing", label="inference + DFT time (t3)",
               description="t2 + the DFT from the model's guess, mean per molecule", console=_MOL),
    ]
    return out


def _band_and_equivariance_metrics() -> list[Metric]:
    return [
        *_mev("bands_mae", "bands", "bands MAE", "MAE of band energies in the window around E_F", console=_CRY,
              headline=True),
        *_mev("bands_mae_pooled", "bands", "bands MAE pooled", "band MAE pooled over all windowed values",
              console=_CRY),
        *_mev("bands_max", "bands", "bands max error", "largest |ΔE| of a band energy in the window", console=_CRY),
        *_mev("bands_mae_all", "bands", "bands MAE (all bands)", "band MAE over all bands, no window", console=_CRY),
        Metric("bands_n_structures", "structures", "bands", "", role="fact", label="band structures",
               description="structures whose bands were compared", console=_CRY),
        Metric("bands_n_values", "values", "bands", "", role="fact", label="band values",
               description="(k, band) values in the window, all structures", console=_CRY),
        *_mev("equivariance_error", "equivariance", "equivariance error",
              "max |H(Rx) − D H(x) Dᵀ| over the predicted rotated copies", headline=True),
        *_mev("equivariance_mae", "equivariance", "equivariance MAE",
              "mean |H(Rx) − D H(x) Dᵀ| over the predicted rotated copies"),
        _fact("equivariance_n_pairs", "pairs", "equivariance", "rotated pairs",
              "(rotated copy, original) pairs both predicted"),
        Metric("T_mae", "eV²", "H", "lower", label="T MAE", description="MAE of the TraceGrad trace labels"),
    ]


#: every metric hambench reports, in display order (console table, leaderboard columns)
CATALOGUE: dict[str, Metric] = {m.key: m for m in (*_h_metrics(), *_orbital_metrics(), *_worst_and_gauge_metrics(),
                                                   *_scf_metrics(), *_band_and_equivariance_metrics())}


def metric(key: str) -> Metric | None:
    """The catalogue's entry of ``key`` (None for a key hambench does not report)."""
    return CATALOGUE.get(key)


def units_of(keys) -> dict[str, str]:
    """``{key: unit}`` of the catalogued ``keys``, in their order (what scores.json's ``units`` records)."""
    return {k: CATALOGUE[k].unit for k in keys if k in CATALOGUE}


def definitions_of(keys) -> dict[str, str]:
    """``{key: definition}`` of the ``keys`` that have one, in catalogue order (scores.json's ``definitions``)."""
    have = set(keys)
    return {k: m.definition for k, m in CATALOGUE.items() if m.definition and k in have}


def console_keys(kind: str) -> list[str]:
    """The keys ``hambench score``'s table shows for a store of ``kind``, in display order."""
    return [k for k, m in CATALOGUE.items() if kind in m.console]


def headline_keys() -> list[str]:
    """The keys ``hambench leaderboard list`` shows first, in display order."""
    return [k for k, m in CATALOGUE.items() if m.headline]


def is_timing(key: str) -> bool:
    """Whether ``key`` is a measured wall time (recorded as measured; a stated value is not compared)."""
    m = CATALOGUE.get(key)
    return m is not None and m.role == "timing"


#: names of wall times the catalogue does not know (``*_s``, ``*time*``): load-dependent, never ranked
_TIME_NAME = re.compile(r"^(.*_s|.*time.*)$")


def is_load_dependent(key: str) -> bool:
    """Whether ``key`` is a wall time, which depends on the hardware and its load (catalogue, else by name).

    >>> is_load_dependent("scf_t3_s"), is_load_dependent("H_mae"), is_load_dependent("training_time_s")
    (True, False, True)
    """
    m = CATALOGUE.get(key)
    return m.load_dependent if m is not None else bool(_TIME_NAME.match(key))


def is_ranked(key: str, overrides: dict | None = None) -> bool:
    """Whether the best value of ``key`` is marked: a direction and not a fact or a wall time (parameter counts and
    timings never are).

    >>> is_ranked("H_mae"), is_ranked("psi"), is_ranked("scf_t3_s"), is_ranked("scf_n_molecules")
    (True, True, False, False)
    """
    m = CATALOGUE.get(key)
    if m is not None:
        return m.ranked
    return better_of(key, overrides) != "" and not is_load_dependent(key)


def describe(key: str) -> str:
    """The longest text the catalogue has about ``key``: its definition, else its one-line description ("")."""
    m = CATALOGUE.get(key)
    return (m.definition or m.description) if m is not None else ""


#: directions of keys the catalogue does not know, from their names: similarities, speed-ups, accuracies and SCF
#: error-level ratios are higher-better; spreads, counts, baselines and the gauge shift are never ranked
_HIGHER = re.compile(r"^(psi(_.*)?|.*speed_?up.*|.*similarity.*|.*accuracy.*|scf_error_level_ratio_[^_]+)$")
_NEUTRAL = re.compile(r"^(.*_std|.*(^|_)n_.*|n_.*|scf_optimal_ratio_.*|scf_cycles_(?!model).*|scf_t1_.*|"
                      r"gauge_mu_mean)$")


def better_of(key: str, overrides: dict | None = None) -> str:
    """``"higher"``, ``"lower"`` or ``""`` (not ranked): which direction of metric ``key`` is better.

    ``overrides``: a scores.json ``better`` mapping, if the scorer states directions itself. A key the catalogue
    does not know is judged by its name.

    >>> [better_of(k) for k in ("psi", "scf_speedup", "scf_achieved_ratio_minao", "H_mae")]
    ['higher', 'higher', 'lower', 'lower']
    >>> better_of("scf_error_level_ratio_minao"), better_of("scf_error_level_ratio_minao_std")
    ('higher', '')
    """
    if overrides and overrides.get(key) in ("lower", "higher", ""):
        return overrides[key]
    m = CATALOGUE.get(key)
    if m is not None:
        return m.better
    if _NEUTRAL.match(key):
        return ""
    return "higher" if _HIGHER.match(key.lower()) else "lower"


def label_of(key: str) -> str:
    """The column header of ``key``: the catalogue's label, else the key with spaces (ψ, ε spelled out)."""
    m = CATALOGUE.get(key)
    return m.label if m is not None else _label_from_key(key)
