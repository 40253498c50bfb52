"""The study-wide shift of a differential summary (``global_shift``, ``modelling.enrichment.global_shift``) as Main
findings says it: when it is large and consistent enough to be a finding, and in the outcome's own words."""

from __future__ import annotations

import math

from ms2study.modelling.differential import SIGNIFICANCE
from ms2study.reporting.html import covariate_names, esc

__all__ = ["SHIFT_MIN_LOG2", "SHIFT_SHARE", "shift_notable", "shift_sentence", "shift_size"]


# A study-wide shift is said when this share of the tested features (or more) move one way, or its permutation p is
# below SIGNIFICANCE: a fresh user's realistic study had 81 % of features higher in cases (median +0.39 log2, p 0.06,
# a per-sample factor lined up with the groups) and two unplanted classes called enriched, with nothing said.
SHIFT_SHARE = 0.7
# ... and only when the median shift is at least this large (log2; for a continuous outcome over 2 sd of it, from
# -1 to +1 sd): a fresh user's study of copies of a few runs, whose features vary by little but noise, read "the
# whole sample shifts with the outcome" over a median of -0.042 log2 (3 %), well inside what normalisation leaves
# between runs (LC-MS peak areas repeat to about 5-15 % RSD). A smaller shift is still shown under the class table.
SHIFT_MIN_LOG2 = 0.1


def shift_size(summary: dict) -> float | None:
    """The size of a summary's ``global_shift`` in log2: |median effect| for a binary outcome, |median effect per
    unit| x 2 x the outcome's sd for a continuous one (``outcome_sd``); None when it cannot be sized (no shift, or a
    continuous outcome's summary written before ``outcome_sd`` was recorded)."""
    shift = summary.get("global_shift")
    if not shift or shift.get("median_effect") is None:
        return None
    effect = abs(float(shift["median_effect"]))
    if summary.get("type") == "continuous":
        sd = shift.get("outcome_sd")
        return effect * 2 * float(sd) if sd is not None else None
    return effect


def shift_notable(summary: dict) -> bool:
    """Whether a differential (or enrichment) summary's ``global_shift`` is large enough to say: ``SHIFT_SHARE`` of
    the tested features or more move one way, or its permutation p is below ``SIGNIFICANCE``; and its size
    (``shift_size``) is at least ``SHIFT_MIN_LOG2`` where it can be sized."""
    shift = summary.get("global_shift")
    if not shift:
        return False
    size = shift_size(summary)
    if size is not None and size < SHIFT_MIN_LOG2:
        return False
    share = float(shift["share_up"])
    return share >= SHIFT_SHARE or share <= 1 - SHIFT_SHARE or float(shift["p_value"]) < SIGNIFICANCE


def shift_sentence(summary: dict, correction: dict | None = None, shift_removed_shown: bool = False) -> str:
    """" Across all N tested features, X % are higher ..." when ``shift_notable``, else "". Said as a shift of the
    whole sample when its p is below ``SIGNIFICANCE``, as possibly chance otherwise; names the class table's
    shift-removed column when it is shown (``shift_removed_shown``) and the PQN option when ``correction``
    (correction.json) records a QC-based correction without it."""
    if not shift_notable(summary):
        return ""
    shift = summary["global_shift"]
    share, p = float(shift["share_up"]), float(shift["p_value"])
    binary = summary.get("type") == "binary"
    up = share >= 0.5
    side = (f"{'higher' if up else 'lower'} in {esc(summary.get('positive_class'))}" if binary
            else f"{'rising' if up else 'falling'} with {esc(summary.get('outcome'))}")
    unit = "log2" if binary else "log2 per unit"
    reading = ("the whole sample shifts with the outcome" if p < SIGNIFICANCE
               else "this may be chance or a shift of the whole sample with the outcome")
    text = (f" Across all {shift['n_features']} tested features, {100 * max(share, 1 - share):.0f} % are "
            f"{side} (median {float(shift['median_effect']):+.2g} {unit}"
            + (f", adjusted for {esc(covariate_names(summary))}; permutation p {p:.2g}" if summary.get("covariates")
               else f"; label-permutation p {p:.2g}") + f"): {reading} "
            "(a dilution or amount difference the correction left, or a broad change), which tests of single "
            "features and of classes follow")
    if shift_removed_shown:
        text += "; the class table's 'q, shift removed' tests each class with each sample's median level taken out"
    correction = correction or {}
    far = amount_outliers(correction)
    if far:  # a trial: a re-injection with a tenth of the material made a shift nobody planted, and went unnamed
        text += (f"; {amount_text(far)}: their undetected features are filled as below detection, which alone can "
                 "make such a shift (check them in the QC section)")
    if correction.get("drift_method") in ("qc_spline", "qc_linear") and not correction.get("normalised_after_drift"):
        text += ("; where it is dilution or amount rather than biology, <code>correct: normalise_after_drift: "
                 "pqn</code> removes it after the QC-based correction")
    return text + "."


AMOUNT_RATIO = 3.0  # a study sample whose normalisation factor is this far from the typical one (1) is named


def amount_outliers(correction: dict | None) -> list[tuple[str, float]]:
    """(study sample, normalisation factor) of the runs holding at most 1 / ``AMOUNT_RATIO`` or at least
    ``AMOUNT_RATIO`` times the typical sample's material (correction.json ``run_factors``: probabilistic quotients
    against the median sample, Dieterle et al. 2006, Anal Chem 78:4281), farthest first; [] without factors."""
    factors = (correction or {}).get("run_factors") or {}
    far = [(s, float(f)) for s, f in factors.items() if f and (f <= 1 / AMOUNT_RATIO or f >= AMOUNT_RATIO)]
    return sorted(far, key=lambda x: -abs(math.log(x[1])))


def amount_text(far: list[tuple[str, float]]) -> str:
    """"run(s) S11 (0.10 of the typical sample's amount) hold far less or more material than the others"."""
    listed = ", ".join(f"{esc(s)} ({f:.2g} of the typical sample's amount)" for s, f in far[:8])
    return f"run(s) {listed}{', ...' if len(far) > 8 else ''} hold far less or more material than the others"
