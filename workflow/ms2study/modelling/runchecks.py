"""Checks of a run against the settings and the other runs: a time-of-flight run searched with an Orbitrap's
precursor window, RT ranges that do not overlap the reference run's, and runs that are only a short excerpt.

``tolerance_note``: config/README.md ("Instrument settings") advises 15-20 ppm for the seven m/z keys with a QTOF,
whose precursors scatter by 5-10 ppm (more where the detector saturates); the defaults (10 ppm) suit an Orbitrap. A
fresh user's trial ran two SCIEX TripleTOF 6600 runs with the defaults: a standard at -10.7 ppm was missed and an
accepted name sat 18.6 ppm off, and nothing said why. A run whose header states a time-of-flight analyzer
(``io.instrument``) and whose precursor window is narrower than ``TOF_ADVISED_PPM[0]`` gets a note; nothing is
inferred from an instrument's name, and a run whose file names no analyzer gets none.

``rt_overlap`` / ``overlap_note``: two runs whose acquisition windows hardly overlap cannot share features (the same
trial: excerpts of 430-469 s and 404-421 s shared none, and the note blamed matrix, method or instrument). A run
with less than ``RT_OVERLAP_MIN_SHARE`` of its RT range inside the reference run's gets a note naming both ranges.
``short_run``: a run spanning less than ``SHORT_RUN_S`` (5 min) is an excerpt or a flow-injection-like run; no LC
gradient of a metabolomics method is that short, so features at its edges are truncated and the alignment has few
features to fit (heuristic threshold of this pipeline; a ballistic 3-5 min gradient would be named too, harmlessly).
``failed_runs``: a run with under ``FAILED_RUN_SHARE`` of the median count of consensus features detected in the
runs of its kind is a failed run (a failed injection, an MS1-only excerpt, a run of another mode): the QC table flags it and
the tests and models leave it out. ``alignment_notes``: a run that shares few features with the reference run.
Imports the standard library, numpy and polars only.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np
import polars as pl

# config/README.md, "Instrument settings": "15-20 ppm for a QTOF whose precursors scatter by 5-10 ppm".
TOF_ADVISED_PPM = (15.0, 20.0)
# The seven keys that look for one ion by m/z and share the instrument's tolerance (config/README.md).
MZ_KEYS = ("detect.mass_error_ppm", "spectra.mz_tolerance_ppm", "link.mz_tol_ppm", "link.align_pair_mz_max_ppm",
           "annotate.precursor_tolerance_ppm", "correct.gap_fill_mz_ppm", "correct.adduct_mz_ppm")
FAILED_RUN_SHARE = 0.2   # a sample or QC with fewer than this share of its type's median feature count: failed
SHORT_RUN_S = 300.0          # a run spanning less acquisition time than this is named as an excerpt
RT_OVERLAP_MIN_SHARE = 0.5   # a run with less of its RT range inside the reference run's gets a note
# A run measuring less of the reference run's RT range is left out of the differential tests and the models: the
# features outside its range were never measured in it, yet would be imputed as if below detection (heuristic of this
# pipeline, as the empty-run rule); one measuring less than RT_COVERAGE_NOTE of it is named in a note.
RT_COVERAGE_MIN = 0.5
RT_COVERAGE_NOTE = 0.9


def window_ppm(tolerance_ppm: float | None, tolerance_da: float | None, precursor_mz: float | None) -> float | None:
    """The annotate stage's precursor half-window in ppm: ``tolerance_da`` (Da) when set, converted at
    ``precursor_mz`` (the run's median precursor m/z; None when unknown or not positive: no conversion), else
    ``tolerance_ppm``. None when neither can be given."""
    if tolerance_da is not None:
        if precursor_mz is None or not math.isfinite(precursor_mz) or precursor_mz <= 0:
            return None
        return float(tolerance_da) / float(precursor_mz) * 1e6
    return None if tolerance_ppm is None else float(tolerance_ppm)


def tolerance_note(time_of_flight: bool, tolerance_ppm: float | None, tolerance_da: float | None = None,
                   precursor_mz: float | None = None) -> str | None:
    """The note for a run whose header states a time-of-flight analyzer (``time_of_flight``) searched with a
    precursor window narrower than ``TOF_ADVISED_PPM[0]`` ppm, or None (not time-of-flight, or a window wide enough,
    or none that can be put in ppm). ``tolerance_ppm`` / ``tolerance_da``: annotate.precursor_tolerance_ppm and
    annotate.precursor_tolerance_da (the Da window, when set, is converted at ``precursor_mz``, the run's median
    precursor m/z)."""
    if not time_of_flight:
        return None
    ppm = window_ppm(tolerance_ppm, tolerance_da, precursor_mz)
    if ppm is None or ppm >= TOF_ADVISED_PPM[0]:
        return None
    low, high = TOF_ADVISED_PPM
    window = (f"±{tolerance_da:g} Da (annotate.precursor_tolerance_da; {ppm:.1f} ppm at the run's median precursor "
              f"m/z {precursor_mz:.1f})" if tolerance_da is not None
              else f"±{ppm:g} ppm (annotate.precursor_tolerance_ppm)")
    return (f"time-of-flight analyzer searched with a precursor window of {window}, narrower than the {low:g}-{high:g} "
            "ppm config/README.md ('Instrument settings') advises for a QTOF: precursors just outside the window get "
            f"no library candidate; set the seven m/z keys ({', '.join(MZ_KEYS)}) to {low:g}-{high:g} ppm")


def rt_overlap(run: tuple[float, float], reference: tuple[float, float]) -> tuple[float, float]:
    """(overlap in s, share of ``run``'s range inside ``reference``'s) for two RT ranges (start, end; s). A run of
    zero length counts as inside when its one time lies in the reference range (share 1) and outside otherwise.
    Raises ValueError when a range ends before it starts or is not finite."""
    for start, end in (run, reference):
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ValueError(f"an RT range must be finite with start <= end (got {start}, {end})")
    overlap = max(0.0, min(run[1], reference[1]) - max(run[0], reference[0]))
    length = run[1] - run[0]
    if length <= 0:
        return 0.0, float(reference[0] <= run[0] <= reference[1])
    return float(overlap), float(overlap / length)


def overlap_note(run: tuple[float, float], reference: tuple[float, float], reference_id: str) -> str | None:
    """The note for a run whose RT range lies mostly outside the reference run's (share inside below
    ``RT_OVERLAP_MIN_SHARE``), naming both ranges (s), or None. Features outside the overlap cannot be matched with
    the reference run's, so the run shares few features and its alignment rests on few or no pairs whatever its
    matrix or instrument. Raises ValueError as ``rt_overlap``."""
    overlap, share = rt_overlap(run, reference)
    if share >= RT_OVERLAP_MIN_SHARE:
        return None
    return (f"its RT range {run[0]:.1f}-{run[1]:.1f} s overlaps the reference run {reference_id}'s "
            f"{reference[0]:.1f}-{reference[1]:.1f} s by {overlap:.1f} s ({share:.0%} of its range): runs acquired "
            "over different RT windows (excerpts, another gradient) cannot share the features outside the overlap")


def short_run(start_s: float | None, end_s: float | None) -> bool:
    """True when a run's acquisition (first to last MS1 scan, s) spans less than ``SHORT_RUN_S``; False when it
    spans more or a bound is unknown."""
    if start_s is None or end_s is None or not (math.isfinite(start_s) and math.isfinite(end_s)):
        return False
    return end_s - start_s < SHORT_RUN_S


def rt_coverage(ranges: dict[str, tuple[float, float]]) -> tuple[tuple[float, float] | None, dict[str, float]]:
    """(the study's typical RT range, each run's share of it) for ``ranges`` (run id -> (first, last scan) s). The
    typical range runs from the median first scan to the median last scan of the runs, so a truncated reference run
    is judged too and one longer run does not widen it (an upper quartile made two of three 600 s runs look cut
    short beside a 1,200 s one); when half the runs or more were cut short, the typical range is theirs and the
    others are not named. None and {} with fewer than 3 runs or an empty typical range. A share is
    ``rt_overlap(typical, run)``'s."""
    if len(ranges) < 3:
        return None, {}
    typical = (float(statistics.median(r[0] for r in ranges.values())),
               float(statistics.median(r[1] for r in ranges.values())))
    if typical[1] <= typical[0]:
        return None, {}
    return typical, {s: rt_overlap(typical, r)[1] for s, r in ranges.items()}


def coverage_note(run: tuple[float, float], share: float, typical: tuple[float, float]) -> str | None:
    """The QC table's note for a run that measured less than ``RT_COVERAGE_NOTE`` of the study's typical RT range
    (``rt_coverage``), saying what the tests and models do with it; None otherwise."""
    if share >= RT_COVERAGE_NOTE:
        return None
    what = ("left out of the differential tests and the models" if share < RT_COVERAGE_MIN else
            "in the tests and models, features eluting outside its range take their mean over the runs that "
            "measured them")
    return (f"its acquisition {run[0]:.1f}-{run[1]:.1f} s covers {share:.1%} of the study's typical RT range "
            f"{typical[0]:.1f}-{typical[1]:.1f} s (a shorter gradient, an excerpt or a stopped run?): {what}")


def detected_counts(matrix: pl.DataFrame, runs: list[str]) -> dict[str, int | None]:
    """Run id -> number of consensus features with a value (> 0) in its column of the linked ``matrix`` (consensus
    features x runs); None for a run without a column."""
    present = [r for r in runs if r in matrix.columns]
    counts = (matrix.select([(pl.col(r).cast(pl.Float64) > 0).sum().alias(r) for r in present]).row(0, named=True)
              if present and matrix.height else {r: 0 for r in present})
    return {r: (int(counts[r]) if r in counts else None) for r in runs}


def failed_runs(counts: dict[Any, int | None]) -> tuple[list[Any], float]:
    """The runs with fewer than ``FAILED_RUN_SHARE`` of the median feature count of their kind, and that median.

    ``counts``: run -> number of features detected in it (None: unknown, not judged), the runs of one
    ``sample_type``, counted on the linked matrix (``detected_counts``) by every stage that applies the rule. A
    failed injection, a run acquired in another mode or an MS1-only excerpt holds a small part of the features of
    its kind; with fewer than 3 known counts nothing is judged ([], median or 0). Used by the QC
    table's outlier rule (``outlier_scores``) and by the tests and models, which leave such study samples out
    (``modelling.outcomes.without_empty_runs``): a trial's failed run, kept, made every feature's variance so large
    that no planted difference was found."""
    known = [c for c in counts.values() if c is not None]
    median = float(statistics.median(known)) if known else 0.0
    if len(known) < 3:
        return [], median
    return [s for s, c in counts.items() if c is not None and c < FAILED_RUN_SHARE * median], median


# A run flagged by failed_runs whose acquisition spans less than this share of the median retention-time span of its
# kind is said to be short (an excerpt, a stopped acquisition) rather than failed (trial AW: a real 17 s TripleTOF
# excerpt beside 60 s runs was called a "failed run").
SHORT_RUN_SHARE = 0.5


def short_run_clause(span_s: float | None, spans_s: list[float | None]) -> str:
    """A clause for a run with few features whose retention-time span (``span_s``: last minus first scan, seconds)
    is under ``SHORT_RUN_SHARE`` of the median span of ``spans_s`` (the runs of its kind, itself included): fewer
    features follow from the shorter acquisition, so the run need not have failed. Empty when spans are unknown or
    the run is not short."""
    known = [float(s) for s in spans_s if s is not None and np.isfinite(s) and s > 0]
    if span_s is None or not np.isfinite(span_s) or len(known) < 2:
        return ""
    median = float(statistics.median(known))
    if span_s >= SHORT_RUN_SHARE * median:
        return ""
    return (f"; it spans {span_s:.0f} s of retention time against a median of {median:.0f} s, so it is a shorter "
            "acquisition (an excerpt or a stopped run) rather than a failed injection")


# A run sharing less than this share of its features with the reference run, and less than RUN_APART_RATIO x the
# other runs' median share, is noted as possibly not belonging to the study (heuristic thresholds of this
# pipeline, from a fresh user's trial: a TripleTOF pesticide standard added to two Q Exactive QC runs shared 13 % of
# its features with the reference, aligned by 11 pairs with a -180 s shift, and went unnoted).
RUN_APART_SHARE = 0.25
RUN_APART_RATIO = 0.4
RUN_APART_ALONE = 0.1  # below this share a run is noted even with no other run to compare it with


def alignment_notes(alignment: pl.DataFrame | None,
                    rt_ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, str]:
    """Per run id, a note when the run shares few of its features with the reference run (see RUN_APART_SHARE):
    another matrix, method, polarity or instrument, or a failed run, whose alignment then rests on few pairs.
    ``alignment``: the link stage's table (sample_id, model, n_features, n_pairs, n_shared_with_reference); {}
    without those columns (older tables). Below RUN_APART_ALONE (10 %) a run is noted even when no other run can be
    compared with it (a study of two runs). ``rt_ranges``: per run id, its acquisition's (first, last) MS1 RT (s);
    when both the run's and the reference run's are known and the run lies mostly outside the reference's range
    (``runchecks.overlap_note``), the note says that, with both ranges, instead of asking about matrix or instrument
    (a trial's two pesticide excerpts of 430-469 s and 404-421 s shared no feature), and it is given whether or not
    the run shares few features."""
    need = {"sample_id", "model", "n_features", "n_pairs", "n_shared_with_reference"}
    if alignment is None or not need <= set(alignment.columns):
        return {}
    ranges = rt_ranges or {}
    reference = alignment.filter(pl.col("model") == "reference")["sample_id"].cast(pl.Utf8).to_list()
    reference_range = ranges.get(reference[0]) if reference else None
    runs = alignment.filter((pl.col("model") != "reference") & (pl.col("n_features") > 0))
    share = (runs["n_shared_with_reference"].cast(pl.Float64) / runs["n_features"].cast(pl.Float64)).to_numpy()
    notes = {}
    for i, row in enumerate(runs.iter_rows(named=True)):
        others = np.delete(share, i)
        typical = float(np.median(others)) if others.size else None
        alone = share[i] < RUN_APART_ALONE
        shared = (f"shares {row['n_shared_with_reference']} of its {row['n_features']} features ({share[i]:.0%}) "
                  "with the reference run" + (f", the other runs {typical:.0%} (median)" if typical is not None else "")
                  + f"; aligned by {row['n_pairs']} pairs ({row['model']}")
        own = ranges.get(str(row["sample_id"]))
        apart = overlap_note(own, reference_range, reference[0]) if own and reference_range else None
        if apart:
            no_fit = "; no RT shift measured" if row["n_pairs"] == 0 else ""
            notes[str(row["sample_id"])] = f"{apart}; {shared}{no_fit})"
        elif alone or (typical is not None and share[i] < RUN_APART_SHARE and share[i] < RUN_APART_RATIO * typical):
            notes[str(row["sample_id"])] = (f"{shared}): another matrix, method, polarity or instrument? check that "
                                            "it belongs here")
    return notes


MZ_OFFSET_MARK = "identifications are lost"  # in the note of a run searched off-centre (below)
# A run whose precursors lie off by more than this share of the precursor window loses matches: MS/MS precursor m/z
# scatter by 1-3 ppm around the offset, so at 7 of 10 ppm a part of them falls outside (a trial's run 5 ppm off
# still accepted 50 spectra, as many as the runs without offset)
MZ_OFFSET_LOSS_SHARE = 0.7


def mz_offset_note(offset_ppm: float | None, recalibrated: bool | None, window_ppm: float | None,
                   scale_error_ppm: float | None = None, searched_at_ppm: float | None = None,
                   min_ppm: float = 2.0) -> str | None:
    """What a run's m/z offset against the study's median run (``offset_ppm``, the link stage's, from
    ``correction.mzoffset.mz_offset_ppm``) means, or None below ``min_ppm`` (``mzoffset.RECALIBRATE_MIN_PPM``) or
    when unknown. ``recalibrated``: link moved the run's features onto that scale; ``window_ppm``: the annotate
    stage's precursor window (ppm; None: no library searched); ``scale_error_ppm``: how far that scale lies from the
    library's m/z (the runs' median precursor error less their offset; None: unknown, taken as 0), so that the run's
    error against the library is about ``offset_ppm + scale_error_ppm``. Beyond ``MZ_OFFSET_LOSS_SHARE`` of the
    window the run's MS/MS were searched off-centre (the annotate stage searches each run by itself): the note says
    its identifications are lost (``MZ_OFFSET_MARK``) and what to do, unless the annotate stage measured the run's
    precursor offset on its own matches and removed it before the search (``searched_at_ppm``, the QC table's
    ``precursor_recalibration_ppm``), which the note then says. A trial's runs 14-20 ppm off lost every
    identification and the planted difference, and no warning named the calibration."""
    if offset_ppm is None or abs(offset_ppm) < min_ppm:
        return None
    against = f"m/z offset {offset_ppm:+.1f} ppm against the study's median run"
    text = (f"{against}: its features were moved onto that m/z scale before linking and gap filling"
            if recalibrated else f"{against}: not removed (link: recalibrate_mz is off), so its features link to the "
            "others' only within link: mz_tol_ppm")
    error = offset_ppm + (scale_error_ppm or 0.0)
    if searched_at_ppm is not None:
        return (f"{text}; the annotate stage measured its precursor offset on its own library matches "
                f"({searched_at_ppm:+.1f} ppm) and searched its MS/MS with it removed")
    if window_ppm is not None and abs(error) > MZ_OFFSET_LOSS_SHARE * window_ppm:
        share = "its" if abs(error) >= window_ppm else "part of its"
        known = (f" (the study's median run lies {scale_error_ppm:+.1f} ppm off)" if scale_error_ppm is not None
                 else "")
        text += (f"; its MS/MS were searched against the library about {error:+.1f} ppm off{known}, with a "
                 f"precursor window of ±{window_ppm:g} ppm, so {share} {MZ_OFFSET_MARK}: recalibrate the run "
                 "(instrument or files), or widen annotate: precursor_tolerance_ppm and the other m/z keys "
                 "(config/README.md)")
    return text


def class_left_out(result: dict, positive: str, classes: list[str], n: int) -> dict:
    """``result`` (``modelling.outcomes.encode_outcome``'s) for a binary outcome whose ``positive`` class has no
    sample left here (``n`` samples of the other ``classes``), though the sheet has it (checked before the run): its
    runs were all left out (failed, short, no values). One class: not tested nor modelled, with a note (trial BC:
    both TripleTOF runs of a group dropped as failed runs stopped the tests and models with advice to name the other
    class, and no report was written)."""
    note = (f"no study sample of class '{positive}' is left among the samples tested (its runs were left out: see "
            "the other notes), so the outcome has one class here and is not tested or modelled")
    result["notes"] = [*result.get("notes", []), note]
    result.update(y=np.zeros(n, dtype=np.int64), classes=classes, positive_class=None)
    return result
