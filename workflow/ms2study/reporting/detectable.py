"""What one feature's differential test could find in this study, in words: the change (binary outcome), slope
(continuous outcome) or one class's change against the others (multiclass outcome) that ``modelling.power`` states
a single changed feature of typical variance needs to reach q < 0.05 with power 0.8, each with the rate at which the
real test found such a change on simulated studies of that design (tests/test_power.py and its longer runs). Imports ``modelling`` and ``reporting.html``.
"""

from __future__ import annotations

from ms2study.modelling.differential import SIGNIFICANCE
from ms2study.reporting.html import covariate_names, esc


def detectable_text(log2_fc: float, summary: dict | None = None) -> str:
    """What one feature's test could find (``modelling.power.detectable_log2_fold_change``), in words; ``summary``
    (the differential summary) says whether the test was paired (``paired_by``) or adjusted for covariates, each
    with the rate measured on simulated studies of that design (tests/test_power.py and its longer runs)."""
    summary = summary or {}
    if summary.get("paired_by"):
        how = ("within subjects, in this paired study with power 0.8 (by the t-test's power formula for the paired "
               "comparison; in simulated paired studies of 8 subjects the real test, with 200 permutations, found "
               "such a change in 70 of 100)")
    elif covariate_names(summary):
        how = ("at equal covariates, in this study with power 0.8 (by the t-test's power formula for the linear "
               "model with its covariates; in simulated 8 + 8 studies adjusted for one covariate the real test, with "
               "200 permutations, found such a change in 80 of 100)")
    else:
        how = ("in this study with power 0.8 (by the t-test's power formula for this study's class sizes; the "
               "formula itself was validated on simulated studies of 6 + 6 samples, where the real test, with 200 "
               "permutations, found such a change in 77 of 100)")
    return (f"A single changed feature of typical variance needs about a {2 ** log2_fc:.1f}-fold change (log2 "
            f"{log2_fc:.2f}) to reach q &lt; {SIGNIFICANCE:g} {how}, if it were the study's only change: smaller "
            "changes of single compounds can be real and missed, and where many features change together the false "
            "discovery rate lets smaller changes pass, so hits below this fold are not in doubt for it.")


# measured: benchmarks/detectable_change.py --designs continuous (100 simulated 16-sample studies, 600 features, a
# 0-10 score, 200 permutations; benchmarks/measured/detectable_change_continuous.json): 75 found at the stated slope,
# 8 at half of it
SLOPE_FOUND = "75 of 100"


def detectable_slope_text(slope: float, summary: dict | None = None) -> str:
    """What one feature's regression test could find for a continuous outcome (``modelling.power.detectable_log2_slope``:
    log2 intensity per unit of the outcome), in words, with the fold change that slope makes over the outcome's
    range in the study (``summary['outcome_range']``, the differential summary's) when known."""
    summary = summary or {}
    outcome = esc(summary.get("outcome") or "the outcome")
    span = summary.get("outcome_range") or []
    over = ""
    if len(span) == 2 and span[1] > span[0]:
        over = (f", a {2 ** (slope * (span[1] - span[0])):.1f}-fold change from its lowest value in the study "
                f"({span[0]:g}) to its highest ({span[1]:g})")
    adjusted = " at equal covariates" if covariate_names(summary) else ""
    return (f"A single changed feature of typical variance needs a slope of about {slope:.3g} log2 per unit of "
            f"{outcome}{over} to reach q &lt; {SIGNIFICANCE:g}{adjusted} in this study with power 0.8 (by the t-test's "
            "power formula for the regression; in simulated 16-sample studies the real test, with 200 permutations, "
            f"found such a slope in {SLOPE_FOUND}): smaller effects of single compounds can be real and missed.")


# measured: benchmarks/detectable_change.py --designs multiclass (100 simulated studies of three classes of 6, 6 and
# 5 samples, 600 features, 200 permutations; benchmarks/measured/detectable_change_multiclass.json)
CLASS_SHIFT_FOUND = "83 of 100"


def detectable_class_text(log2_shift: float, summary: dict | None = None) -> str:
    """What one feature's F-test of a multiclass outcome could find (``modelling.power.detectable_log2_class_shift``:
    one class against all the others, stated for the smallest class), in words, with the rate at which the real
    test found such a change on simulated studies."""
    summary = summary or {}
    counts = {str(k): v for k, v in (summary.get("class_counts") or {}).items() if isinstance(v, int)}
    smallest = min(counts, key=counts.get) if counts else None
    which = f" (stated for the smallest class, {esc(smallest)}, n = {counts[smallest]})" if smallest else ""
    adjusted = " at equal covariates" if covariate_names(summary) else ""
    return (f"A single changed feature of typical variance needs one class about a {2 ** log2_shift:.1f}-fold change "
            f"against the others (log2 {log2_shift:.2f}){which} to reach q &lt; {SIGNIFICANCE:g} in the F-test of the "
            f"classes{adjusted} with power 0.8 (by the F-test's power formula; in simulated studies of three classes "
            f"of 6, 6 and 5 samples the real test, with 200 permutations, found such a change in {CLASS_SHIFT_FOUND}), "
            "if it were the study's only change: smaller changes of single compounds can be real and missed.")
