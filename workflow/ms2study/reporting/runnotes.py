"""Warnings about the runs themselves, from the QC table (``results/study/qc.parquet``, written by ``ms2study qc``).

Warnings read from columns the qc stage fills (runs stating several instrument models or analyzers:
``instrument_mix_warning``; runs measured off in m/z: ``mz_offset_warning``):
time-of-flight runs searched with a precursor window narrower than config/README.md advises for a QTOF (``tolerance_note``, with the runs' ``instrument`` and
``mass_analyzers`` as their files state them: a caution on the identifications, since compounds just outside the
window are missed and the accepted matches' median precursor error, taken inside the window, cannot show it), and
runs whose acquisition spans less than ``modelling.runchecks.SHORT_RUN_S`` (``rt_start_s``, ``rt_end_s``: one plain
data-quality line, features at the edges are truncated and the RT alignment has little to fit), and feature counts
that fall with ``injection_order`` (``order_trend_warning``: a sensitivity loss over the sequence, which intensity
correction cannot undo for the features it pushes below detection), and runs the detect stage centroided
(``centroiding_warning``: profile and vendor-centroided runs mixed in one study). A QC table without these columns (older runs)
gives none of them. May import ``ms2study.core``, ``ms2study.modelling`` and the other
``reporting`` modules.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from ms2study.modelling.qc import FORCED_CENTROIDED, PROFILE_CENTROIDED, PROFILE_NOT_CENTROIDED
from ms2study.modelling.runchecks import MZ_OFFSET_MARK, SHORT_RUN_S, short_run
from ms2study.reporting.html import DOUBT, PROCESSING, QUALITY, Caution, esc

TOF_LABEL = "time-of-flight runs searched with a narrow precursor window"
# a precursor offset removed by the annotate stage that a lab should look at (an Orbitrap's specification: 3-5 ppm);
# a time-of-flight run without lock mass is often 3-10 ppm off between runs (trial AI: 5 of 10 TOF runs called off)
CALIBRATION_CHECK_PPM = 5.0
CALIBRATION_CHECK_TOF_PPM = 10.0


def _described(rows: list[dict]) -> str:
    """Run ids with their instrument: "AGM, SIR (TripleTOF 6600; mass analyzers quadrupole, time-of-flight)" when
    they share one description, each with its own otherwise (escaped HTML)."""
    def what(row: dict) -> str:
        model = row.get("instrument") or "model not stated"
        analyzers = row.get("mass_analyzers")
        return f"{model}; mass analyzers {analyzers}" if analyzers else model
    kinds = {what(r) for r in rows}
    if len(kinds) == 1:
        return f"{esc(', '.join(str(r['sample_id']) for r in rows))} ({esc(kinds.pop())}, as their files state)"
    return "; ".join(f"{esc(r['sample_id'])} ({esc(what(r))})" for r in rows) + " (as their files state)"


def tof_warning(qc: pl.DataFrame, warnings: list[str]) -> None:
    """Append one caution on the identifications naming the runs whose ``tolerance_note`` is set (a time-of-flight
    analyzer searched with a precursor window narrower than advised; ``modelling.runchecks.tolerance_note``), with
    their instrument and analyzers and what to set. Nothing when the table has no such column or note."""
    if "tolerance_note" not in qc.columns:
        return
    noted = qc.filter(pl.col("tolerance_note").is_not_null())
    if not noted.height:
        return
    rows = noted.to_dicts()
    notes = sorted({r["tolerance_note"] for r in rows})
    said = esc("; ".join(n.removeprefix("time-of-flight analyzer ") for n in notes))
    warnings.append(Caution(
        f"<b>time-of-flight data searched with a narrow precursor window</b>: run(s) {_described(rows)} {said}, then "
        "rerun. The median precursor error in the QC table cannot show this: it is taken over the accepted matches, "
        "which lie inside the window by construction.",
        DOUBT, TOF_LABEL, ("identifications",)))


def mz_offset_warning(qc: pl.DataFrame, warnings: list[str]) -> None:
    """Runs measured off in m/z against the study's median run (``mz_offset_note``, ``runchecks.mz_offset_note``):
    a caution on the identifications and the findings when a run was searched off-centre in its precursor window
    (``MZ_OFFSET_MARK``), naming each run's offset and accepted identifications beside the other runs' median; a
    processing note listing the other offsets removed before linking; a data-quality line naming the runs whose
    precursor offset the annotate stage removed (``precursor_recalibration_ppm``). Nothing without the columns
    (older tables).
    A trial: five runs 14-20 ppm off lost every identification and, unlinked, the planted difference, while the
    report blamed a dilution."""
    if "precursor_recalibration_ppm" in qc.columns:
        searched = qc.filter(pl.col("precursor_recalibration_ppm").is_not_null())
        if searched.height:
            listed = ", ".join(f"{s} ({o:+.1f} ppm)"
                               for s, o in searched.select("sample_id", "precursor_recalibration_ppm").rows())
            tof = (searched["mass_analyzers"].fill_null("").str.contains("time-of-flight")
                   if "mass_analyzers" in searched.columns else pl.Series([False] * searched.height))
            limit = pl.Series([CALIBRATION_CHECK_TOF_PPM if t else CALIBRATION_CHECK_PPM for t in tof.to_list()])
            far = bool((searched["precursor_recalibration_ppm"].abs() >= limit).any())
            warnings.append(Caution(
                f"precursor m/z measured off against the library in {searched.height} of {qc.height} run(s): "
                f"{esc(listed)}; each offset was measured on the run's own confident library matches and removed "
                "before its search, its spectra embedded again at the corrected m/z (annotate: "
                "recalibrate_precursors); the errors reported stay the measured ones"
                + (f"; the instrument's mass calibration wants checking (offsets of {CALIBRATION_CHECK_PPM:g} ppm or "
                   f"more, {CALIBRATION_CHECK_TOF_PPM:g} on a time-of-flight run)" if far else ""),
                QUALITY if far else PROCESSING))
    if "mz_offset_note" not in qc.columns:
        return
    noted = qc.filter(pl.col("mz_offset_note").is_not_null())
    if not noted.height:
        return
    lost = noted.filter(pl.col("mz_offset_note").str.contains(MZ_OFFSET_MARK, literal=True))
    others = qc.filter(~pl.col("sample_id").is_in(lost["sample_id"].implode()) & pl.col("n_accepted").is_not_null())
    typical = f"; the other runs' median {float(others['n_accepted'].median()):g}" if others.height else ""
    if lost.height:
        listed = ", ".join(f"{s} ({o:+.1f} ppm, {n if n is not None else '?'} accepted)"
                           for s, o, n in lost.select("sample_id", "mz_offset_ppm", "n_accepted").rows())
        warnings.append(Caution(
            f"<b>run(s) measured off in m/z</b>: {esc(listed)}{typical}. {esc(lost['mz_offset_note'][0])}. Their "
            "compounds are named from the other runs only, and a run whose features could not be linked counts them "
            "as missing in the tests and models; the QC table's m/z offset column gives every run's.",
            DOUBT, "runs off in m/z", ("identifications", "differential", "models")))
    moved = noted.filter(~pl.col("sample_id").is_in(lost["sample_id"].implode()))
    if moved.height:
        listed = ", ".join(f"{s} ({o:+.1f} ppm)" for s, o in moved.select("sample_id", "mz_offset_ppm").rows())
        warnings.append(Caution(
            f"m/z offsets against the study's median run: {esc(listed)}; "
            + ("removed before linking (link: recalibrate_mz)" if moved["mz_recalibrated"].fill_null(False).all()
               else "see each run's note in the QC table"),
            PROCESSING))


def short_run_warning(qc: pl.DataFrame, warnings: list[str]) -> None:
    """Append one data-quality line naming the runs whose acquisition (rt_start_s to rt_end_s) spans less than
    ``SHORT_RUN_S``, with their ranges. Nothing when the table has no such columns or no such run."""
    if not {"rt_start_s", "rt_end_s"} <= set(qc.columns):
        return
    short = [r for r in qc.select("sample_id", "rt_start_s", "rt_end_s").to_dicts()
             if short_run(r["rt_start_s"], r["rt_end_s"])]
    if not short:
        return
    listed = ", ".join(f"{esc(r['sample_id'])} {r['rt_start_s']:.1f}-{r['rt_end_s']:.1f} s" for r in short)
    warnings.append(Caution(
        f"run(s) spanning less than {SHORT_RUN_S / 60:g} min of acquisition ({listed}): excerpts of longer runs? "
        "Features at the edges of such a window are truncated (their area and apex RT are not the compound's), and "
        "the RT alignment has few features to fit.", QUALITY))


def centroiding_warning(qc: pl.DataFrame, warnings: list[str]) -> None:
    """Append what the detect stage did to runs not centroided as written (``ms1_centroiding`` of ``modelling.qc.QC``):
    a caution when some runs came as profile data and were centroided here (PeakPickerHiRes) while others came
    centroided by their instrument's software (two centroiding algorithms give different peak heights and m/z, so a
    difference between those runs may be the method's), a data-quality line when every run was centroided here,
    and a caution naming runs kept in profile mode (``centroid: never``). Nothing without the column (older tables)."""
    if "ms1_centroiding" not in qc.columns:
        return
    how = dict(zip(qc["sample_id"].cast(pl.Utf8).to_list(), qc["ms1_centroiding"].to_list()))

    def named(value: str) -> list[str]:
        return [s for s, v in how.items() if v == value]

    here, forced, raw = named(PROFILE_CENTROIDED), named(FORCED_CENTROIDED), named(PROFILE_NOT_CENTROIDED)
    as_written = [s for s, v in how.items() if v is None]
    if raw:
        warnings.append(Caution(
            f"run(s) {esc(', '.join(raw))} hold profile MS1 data and were used as profile (<code>centroid: never"
            "</code>): feature detection expects centroided scans, so their features are poor. Set "
            "<code>detect: {centroid: auto}</code> and rerun.", DOUBT))
    if here and as_written:
        warnings.append(Caution(
            f"{len(here)} of {len(how)} runs came as profile data and were centroided here (pyOpenMS PeakPickerHiRes: "
            f"{esc(', '.join(here))}); the other {len(as_written)} came centroided by their instrument's software or "
            "converter. Two centroiding algorithms give different peak heights and m/z, so a difference between these "
            "two sets of runs may be the method's, not the samples': convert every run the same way (all profile, or "
            "all centroided by the vendor's converter) before comparing them.", DOUBT))
    elif how and len(as_written) == len(how):  # trial AW: nothing said how the runs' data came
        warnings.append(Caution(f"the runs' MS1 scans came centroided (by the instrument's software or the converter, "
                                f"checked on the data) and were used as written ({len(how)} runs).", PROCESSING))
    elif here:
        warnings.append(Caution(
            f"the runs' MS1 scans came as profile data and were centroided here (pyOpenMS PeakPickerHiRes, the "
            f"detect section's <code>peak_picker_snr</code>; {len(here)} runs), as one method for all of them.",
            PROCESSING))
    if forced:
        warnings.append(Caution(
            f"run(s) {esc(', '.join(forced))} came centroided and were centroided again (<code>centroid: always"
            "</code>): picking peaks in centroided scans can merge or drop centroids. Set <code>centroid: auto"
            "</code> unless their files wrongly declare centroided data.", QUALITY))


def instrument_mix_warning(qc: pl.DataFrame, warnings: list[str]) -> None:
    """Append a caution when the runs' files state two or more instrument models, or two or more sets of mass
    analyzers (``instrument``, ``mass_analyzers``; trial AS: Q Exactive and TripleTOF runs in one study went
    unremarked), naming each with its runs. Runs that state neither are left out (nothing says they differ)."""
    if "instrument" not in qc.columns:
        return
    rows = qc.select(pl.col("sample_id").cast(pl.Utf8), "instrument",
                     *(["mass_analyzers"] if "mass_analyzers" in qc.columns else [])).to_dicts()
    models = {r["instrument"] for r in rows if r.get("instrument")}
    analyzers = {r["mass_analyzers"] for r in rows if r.get("mass_analyzers")}
    if len(models) < 2 and len(analyzers) < 2:
        return
    key = "instrument" if len(models) >= 2 else "mass_analyzers"
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r.get(key) or "not stated", []).append(r["sample_id"])
    listed = "; ".join(f"{esc(k if key == 'instrument' else 'mass analyzers ' + k)} ({len(v)} run"
                       f"{'s' if len(v) != 1 else ''}: {esc(', '.join(v[:8]))}{', ...' if len(v) > 8 else ''})"
                       for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1])))
    warnings.append(Caution(
        f"<b>the runs come from {len(groups) - ('not stated' in groups)} different instruments</b>, as their files "
        f"state: {listed}. Sensitivity, mass accuracy, fragmentation and retention times differ between "
        "instruments, and the features are linked and compared across them as if one had measured all: a "
        "difference that follows the instrument is the instrument's. Compare runs of one instrument, or give the "
        "instrument as a sample-sheet column (then named under <code>models: covariates</code>, and the design "
        "checks say whether it goes with an outcome).", DOUBT, "several instruments", ("differential", "models")))


# Feature counts falling with injection order: Spearman's rho (scipy.stats.spearmanr) at most -TREND_RHO with
# p < TREND_P, and a Theil-Sen line (scipy.stats.theilslopes; Sen 1968, JASA 63:1379) losing at least TREND_DROP of
# the median count from the first to the last injection, over at least TREND_MIN_RUNS runs of one type. Its rate
# on null sequences is tested (tests/test_order_trend.py).
TREND_RHO, TREND_P, TREND_DROP, TREND_MIN_RUNS = 0.5, 0.01, 0.2, 6
TREND_TYPES = {"sample": "study samples", "qc": "pooled QCs"}


def feature_count_trend(order: np.ndarray, counts: np.ndarray) -> dict | None:
    """The fall of feature counts (``counts``, one per run) over injection ``order`` (same length): {"rho", "p",
    "drop"} (Spearman's rho and p; the Theil-Sen line's change from the first to the last injection as a share of
    the median count, negative when counts fall), or None with fewer than TREND_MIN_RUNS runs, a single injection
    order or no counts."""
    keep = np.isfinite(order) & np.isfinite(counts)
    order, counts = order[keep], counts[keep]
    if len(order) < TREND_MIN_RUNS or np.ptp(order) == 0 or np.median(counts) <= 0 or np.ptp(counts) == 0:
        return None
    rho, p = stats.spearmanr(order, counts)
    slope = stats.theilslopes(counts, order).slope
    return {"rho": float(rho), "p": float(p), "drop": float(slope * np.ptp(order) / np.median(counts))}


def order_trend_warning(qc: pl.DataFrame, warnings: list[str]) -> None:
    """Append one data-quality line per run type (study samples, pooled QCs) whose feature counts fall with
    injection order (``feature_count_trend``: rho <= -TREND_RHO at p < TREND_P and a drop of TREND_DROP or more):
    a source or column losing sensitivity over the sequence. Intensity correction (QC-RLSC, PQN) rescales what was
    detected but cannot bring back features pushed below detection, so missing values then follow injection order,
    and an outcome not randomised over the sequence is confounded with it. Nothing without the columns."""
    if not {"injection_order", "n_features", "sample_type"} <= set(qc.columns):
        return
    for kind, words in TREND_TYPES.items():
        runs = qc.filter((pl.col("sample_type") == kind) & pl.col("injection_order").is_not_null())
        trend = feature_count_trend(runs["injection_order"].cast(pl.Float64).to_numpy(),
                                    runs["n_features"].cast(pl.Float64).to_numpy()) if runs.height else None
        if trend is None or trend["rho"] > -TREND_RHO or trend["p"] >= TREND_P or trend["drop"] > -TREND_DROP:
            continue
        p_text = f"{trend['p']:.2g}" if trend["p"] >= 1e-6 else "< 1e-6"
        ordered = runs.sort("injection_order")
        first, last = ordered.row(0, named=True), ordered.row(-1, named=True)
        warnings.append(Caution(
            f"the {words}' feature counts fall with injection order ({runs.height} runs, Spearman's rho "
            f"{trend['rho']:.2f}, p {p_text}; the fitted line loses {100 * -trend['drop']:.0f} % of the median "
            f"count from injection {first['injection_order']} to {last['injection_order']}; first run "
            f"{esc(first['sample_id'])} {first['n_features']} features, last {esc(last['sample_id'])} "
            f"{last['n_features']}): the instrument lost sensitivity over the sequence (source, column, detector)? "
            "Intensity correction rescales what was detected but cannot bring back features that fell below "
            "detection, so missing values follow injection order: check that the groups were randomised over the "
            "sequence, and clean or recalibrate before the next batch.", QUALITY))


# the runs' peaks are this many times wider (or narrower: the inverse) than detect.chrom_fwhm_s before it is said
PEAK_WIDTH_RATIO = 2.5


def peak_width_warning(qc: pl.DataFrame, chrom_fwhm_s: float | None, warnings: list[str]) -> None:
    """A caution on the conclusions (trial AG: as a processing note it was folded away and not printed at the end of
    the run) when the runs' peaks (median over the runs but blanks of ``peak_fwhm_median_s``, the median
    half-height width of each run's isotope-confirmed features) are more than ``PEAK_WIDTH_RATIO`` times wider or
    narrower than ``detect: chrom_fwhm_s`` (the smoothing and peak-splitting width): too wide a setting merges
    neighbouring peaks of one m/z (trial AE: isomers 3.5-5 s apart summed at 5 s on 1.6-3.3 s peaks), too narrow a
    one cuts a broad peak into pieces. Nothing without the column, the value or a width."""
    if chrom_fwhm_s is None or "peak_fwhm_median_s" not in qc.columns or not float(chrom_fwhm_s) > 0:
        return
    # blanks left out: their few features are mostly broad background ions (trial AG: 10.9-11.5 s beside 5.9 s)
    runs = qc.filter(pl.col("sample_type") != "blank") if "sample_type" in qc.columns else qc
    widths = runs["peak_fwhm_median_s"].drop_nulls()
    if not widths.len():
        return
    typical, setting = float(widths.median()), float(chrom_fwhm_s)
    if typical > PEAK_WIDTH_RATIO * setting:
        effect = ("a smoothing width far below the peaks' cuts a broad peak into pieces (counted as features of "
                  "their own, each with part of the area)")
    elif typical * PEAK_WIDTH_RATIO < setting:
        effect = ("a smoothing width far above the peaks' merges neighbouring peaks of one m/z (isomers eluting a few "
                  "seconds apart are summed into one feature)")
    else:
        return
    warnings.append(Caution(
        f"the runs' chromatographic peaks are a median <b>{typical:.1f} s</b> wide at half height (features with an "
        f"isotope trace, median over {widths.len()} run(s)), but <code>detect: chrom_fwhm_s</code> is {setting:g} s: "
        f"{effect}. Set <code>chrom_fwhm_s</code> near {typical:.1f} in the study's config.yaml and run again "
        "(detection and everything after it rerun). On a simulated study of 10-20 s peaks detected at 3 s, 45 of "
        "269 compounds were split over several features, some pieces with a fold change of the wrong sign",
        DOUBT, "peak width setting", ("differential", "models")))


def run_warnings(qc: pl.DataFrame, warnings: list[str], chrom_fwhm_s: float | None = None) -> None:
    """The warnings of this module for a QC table (``tof_warning``, ``instrument_mix_warning``, ``mz_offset_warning``,
    ``short_run_warning``, ``order_trend_warning``, ``centroiding_warning``, and with ``chrom_fwhm_s`` (``detect:
    chrom_fwhm_s``) ``peak_width_warning``), appended to ``warnings``."""
    peak_width_warning(qc, chrom_fwhm_s, warnings)
    tof_warning(qc, warnings)
    instrument_mix_warning(qc, warnings)
    mz_offset_warning(qc, warnings)
    centroiding_warning(qc, warnings)
    short_run_warning(qc, warnings)
    order_trend_warning(qc, warnings)
