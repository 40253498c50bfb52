"""Cross-sample feature alignment and linking into the study feature matrix (the ``link`` stage).

Every sample's features are aligned onto the retention-time axis of one fixed reference sample, so adding
a sample never moves the others: MapAlignmentAlgorithmPoseClustering pairs features of the sample with
the reference's, a linear model is fitted to those pairs (after dropping pairs whose RT difference is an
outlier: in feature-dense runs a few percent of pairs are wrong and would tilt a least-squares line),
and MapAlignmentTransformer applies it. FeatureGroupingAlgorithmKD then links features within
``mz_tol_ppm`` and ``rt_tol_s`` into consensus features, and ``merge_split_consensus`` joins the pieces of one
broad or flat elution profile whose apex the feature finder placed in different places in different runs
(``merge_split``: same m/z, elution ranges overlapping by half the shorter one, runs never overlapping except a
few where the trace was cut into touching pieces, which are then summed). The result is the wide matrix of ``tables.FEATURE_MATRIX_KEYS`` followed by one intensity column per sample (null
where the sample has no feature), consensus ids ``C{n}`` in ascending m/z then RT. The per-sample alignment
summary and the consensus-to-feature links come back beside it.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms

from ms2study.core import tables
from ms2study.core.atomic import write_parquet
from ms2study.core.errors import InputError
from ms2study.core.measurement import recalibrated
from ms2study.core.params import overlay, schema_defaults
from ms2study.correction.mzoffset import RECALIBRATE_MIN_PPM, RT_WINDOW_FACTOR, mz_offset_ppm
from ms2study.io.msio import features_to_featuremap, set_params

log = logging.getLogger(__name__)

# The config schema's "link" section: linking (FeatureGroupingAlgorithmKD: mz_tol_ppm, rt_tol_s, warp) and
# alignment (MapAlignmentAlgorithmPoseClustering + a linear fit: align*). Times in seconds.
DEFAULT_PARAMS: dict = schema_defaults("link")

ALIGNMENT: dict[str, pl.DataType] = {
    "sample_id": pl.Utf8,
    "n_features": pl.Int32,
    "n_pairs": pl.Int32,  # feature pairs with the reference used for the fit
    "model": pl.Utf8,  # reference | linear | shift | identity
    "slope": pl.Float64,
    "intercept": pl.Float64,
    "rt_shift_median_s": pl.Float64,  # median (aligned - raw) RT over the sample's features
    "rt_shift_max_abs_s": pl.Float64,
    # the run's m/z offset against the study's median run (ppm, correction.mzoffset; null: not measurable) and whether
    # its features' m/z were moved onto that scale before alignment and linking (link: recalibrate_mz)
    "mz_offset_ppm": pl.Float64,
    "mz_recalibrated": pl.Boolean,
    # After alignment and linking: |aligned RT - reference RT| over the consensus features the sample shares with the
    # reference run (the alignment's quality, which must not degrade as a cohort grows), and how many there are.
    "rt_residual_median_abs_s": pl.Float64,
    "n_shared_with_reference": pl.Int32,
}

# One row per (consensus feature, sample feature). A sample has one feature per consensus feature, or several where
# merge_split joined the touching pieces of one trace (the matrix holds their sum).
LINKS: dict[str, pl.DataType] = {
    "consensus_id": pl.Utf8,
    "sample_id": pl.Utf8,
    "feature_id": pl.Utf8,
    "rt_aligned_s": pl.Float64,
    # the sample feature's chromatographic peak width (s): its FWHM from detection, else half its RT hull; null when
    # the table has neither (the RT spread flag then judges the feature's apex spread in seconds only)
    "peak_width_s": pl.Float64,
}


@dataclass
class LinkResult:
    """The feature matrix plus the per-sample alignment summary and the consensus -> feature links."""

    matrix: pl.DataFrame
    alignment: pl.DataFrame
    links: pl.DataFrame


def _fit_alignment(
    ref: oms.FeatureMap, fmap: oms.FeatureMap, params: dict
) -> tuple[oms.TransformationDescription, str, float, float, int]:
    """Pose-clustering pairs, outliers dropped, linear fit; returns (trafo, model, slope, intercept, n_pairs)."""
    aligner = oms.MapAlignmentAlgorithmPoseClustering()
    set_params(
        aligner,
        {
            "max_num_peaks_considered": int(params["align_max_features"]),
            "superimposer:max_shift": float(params["align_max_shift_s"]),
            "pairfinder:distance_RT:max_difference": float(params["align_pair_rt_max_s"]),
            "pairfinder:distance_MZ:max_difference": float(params["align_pair_mz_max_ppm"]),
            "pairfinder:distance_MZ:unit": "ppm",
        },
    )
    aligner.setReference(ref)
    try:
        pairs = aligner.align(fmap).getDataPoints()
    except RuntimeError as err:  # too few features for the superimposer, degenerate maps
        log.warning("pose clustering failed (%s); no alignment", err)
        pairs = []
    x = np.array([p.first for p in pairs], dtype=np.float64)  # the sample's RT
    y = np.array([p.second for p in pairs], dtype=np.float64)  # the reference's RT
    if x.size:
        # Robust pair filter: wrong pairs show up as RT differences far from the bulk.
        d = y - x
        med = float(np.median(d))
        mad = 1.4826 * float(np.median(np.abs(d - med)))
        keep = np.abs(d - med) <= max(3.0 * mad, 1.0)
        x, y = x[keep], y[keep]
    n_pairs = int(x.size)
    if n_pairs < int(params["align_min_pairs"]):
        return _linear_trafo(1.0, 0.0), "identity", 1.0, 0.0, n_pairs
    slope, intercept = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (1.0, float(np.median(y - x)))
    model = "linear"
    if abs(slope - 1.0) > float(params["align_max_slope_deviation"]):
        # A run covering a narrow RT range cannot pin a slope; a constant shift is the honest fallback.
        slope, intercept, model = 1.0, float(np.median(y - x)), "shift"
    return _linear_trafo(float(slope), float(intercept)), model, float(slope), float(intercept), n_pairs


def _linear_trafo(slope: float, intercept: float) -> oms.TransformationDescription:
    """A TransformationDescription holding the line rt_ref = slope * rt + intercept."""
    trafo = oms.TransformationDescription()
    # Two exact points define the line; fitModel("linear") then reproduces it.
    pts = [oms.TransformationModel_DataPoint(), oms.TransformationModel_DataPoint()]
    for p, x in zip(pts, (0.0, 1000.0), strict=True):
        p.first, p.second = x, slope * x + intercept
    trafo.setDataPoints(pts)
    trafo.fitModel("linear", oms.Param())
    return trafo


def _mz_offsets(features: dict[str, pl.DataFrame], reference: str, params: dict) -> dict[str, tuple[float | None, bool]]:
    """Per run: its m/z offset in ppm against the study's median run (``correction.mzoffset.mz_offset_ppm`` against
    ``reference``, less the median of those offsets over the runs where it was measured, the reference's 0
    included; None when not measurable) and whether it is removed before alignment (``recalibrate_mz`` on and
    |offset| >= ``RECALIBRATE_MIN_PPM``), with a log line per removed offset. The median, not the reference run,
    anchors the scale: a trial's reference run 15 ppm off moved the 15 good runs onto its wrong scale, and every
    consensus m/z and name's m/z mark followed it."""
    ref = features[reference]
    window = RT_WINDOW_FACTOR * float(params["align_pair_rt_max_s"])
    against: dict[str, float | None] = {}
    for s, df in features.items():
        against[s] = 0.0 if s == reference else mz_offset_ppm(
            df["mz"].to_numpy(), df["rt_s"].to_numpy(), df["intensity"].to_numpy(), ref["mz"].to_numpy(),
            ref["rt_s"].to_numpy(), window)[0]
    measured = [o for o in against.values() if o is not None]
    median = float(np.median(measured)) if len(measured) >= 3 else 0.0  # two runs: the reference anchors
    out: dict[str, tuple[float | None, bool]] = {}
    for s, offset in against.items():
        offset = None if offset is None else offset - median
        moved = bool(params["recalibrate_mz"]) and offset is not None and abs(offset) >= RECALIBRATE_MIN_PPM
        out[s] = (offset, moved)
        if moved:
            log.info("%s: m/z offset %+.1f ppm against the study's median run (reference %s: %+.1f ppm): its "
                     "features' m/z are moved onto that scale before alignment and linking", s, offset, reference,
                     -median)
    return out


def _recalibrated(features: pl.DataFrame, offset_ppm: float | None) -> pl.DataFrame:
    """``features`` with ``mz`` (and ``mz_min`` / ``mz_max`` where present) divided by 1 + offset x 1e-6."""
    return features.with_columns([pl.Series(c, recalibrated(features[c].to_numpy(), float(offset_ppm or 0.0)))
                                  for c in ("mz", "mz_min", "mz_max") if c in features.columns])


REFERENCE_MIN_SHARE = 0.25  # a reference with fewer features than this share of the runs' median gives way


def usable_reference(features: dict[str, pl.DataFrame], reference: str, fallbacks: tuple[str, ...] = ()) -> str:
    """The run to align onto: ``reference``, or, when it has almost no features (fewer than REFERENCE_MIN_SHARE of
    the runs' median count: a run too short to detect any, a 3-second excerpt), the first of ``fallbacks`` (the
    sheet's other study samples, then its pooled QCs) that has enough, with a warning naming both. Fresh users'
    trials: an empty mzXML, and a 3-second excerpt with 344 features beside runs with 2,300, first in the sheet became
    the reference; every other run was "aligned by 0 pairs" and the notes blamed the good runs' RT ranges.
    ``reference`` itself when no candidate has enough."""
    counts = {s: f.height for s, f in features.items()}
    enough = max(1.0, REFERENCE_MIN_SHARE * float(np.median(list(counts.values())))) if counts else 1.0
    if features.get(reference) is None or counts[reference] >= enough:
        return reference
    chosen = next((s for s in fallbacks if counts.get(s, 0) >= enough), reference)
    if chosen != reference:
        log.warning("the alignment's reference run %s has %d features, fewer than a quarter of the runs' median "
                    "(see its detect log): the runs are aligned onto %s instead; set reference_sample in config.yaml "
                    "to choose another", reference, counts[reference], chosen)
    return chosen


def link_features_full(features: dict[str, pl.DataFrame], reference: str, params: dict | None = None,
                       fallbacks: tuple[str, ...] = ()) -> LinkResult:
    """Align every sample onto ``reference`` (or, when it has no features, the first of ``fallbacks`` that has:
    ``usable_reference``) and link; returns the matrix, the alignment summary and the links."""
    params = overlay(params, DEFAULT_PARAMS, "link")
    samples = list(features)
    if not samples:
        raise InputError("no samples to link", fix="give at least one features table")
    if reference not in features:
        raise InputError(
            f"reference sample '{reference}' is not among the samples {samples}",
            sample=reference,
            fix="set reference_sample in config.yaml to one of the sample ids",
        )
    reference = usable_reference(features, reference, tuple(fallbacks))
    clash = sorted(set(samples) & set(tables.FEATURE_MATRIX_KEYS))
    if clash:
        raise InputError(
            f"sample id(s) {clash} clash with the feature matrix's key columns",
            sample=clash[0],
            fix="rename the sample(s) in the sample sheet",
        )

    offsets = _mz_offsets(features, reference, params)
    features = {s: _recalibrated(df, offsets[s][0]) if offsets[s][1] else df for s, df in features.items()}
    fmaps = {s: features_to_featuremap(df) for s, df in features.items()}
    ref_map = fmaps[reference]
    align_rows = []
    for s in samples:
        fm, n = fmaps[s], features[s].height
        raw_rt = np.array([f.getRT() for f in fm], dtype=np.float64)
        if s == reference:
            model, slope, intercept, n_pairs = "reference", 1.0, 0.0, n
        elif not params["align"] or n == 0 or ref_map.size() == 0:
            model, slope, intercept, n_pairs = "identity", 1.0, 0.0, 0
        else:
            trafo, model, slope, intercept, n_pairs = _fit_alignment(ref_map, fm, params)
            oms.MapAlignmentTransformer.transformRetentionTimes(fm, trafo, True)
        shift = np.array([f.getRT() for f in fm], dtype=np.float64) - raw_rt
        align_rows.append(
            {
                "sample_id": s,
                "n_features": n,
                "n_pairs": n_pairs,
                "model": model,
                "slope": slope,
                "intercept": intercept,
                "rt_shift_median_s": float(np.median(shift)) if shift.size else None,
                "rt_shift_max_abs_s": float(np.max(np.abs(shift))) if shift.size else None,
                "mz_offset_ppm": offsets[s][0],
                "mz_recalibrated": offsets[s][1],
            }
        )
        log.info("%s: %s alignment (slope %.4f, intercept %.2f s, %d pairs)", s, model, slope, intercept, n_pairs)
    alignment = pl.DataFrame(align_rows, schema={k: ALIGNMENT[k] for k in list(ALIGNMENT)[:10]})

    # Empty maps take no part in grouping (their column stays null); KD needs at least two maps,
    # so a lone non-empty map is "grouped" by making each of its features a consensus of its own.
    active = [s for s in samples if fmaps[s].size() > 0]
    groups: list[list[tuple[str, int, float]]] = []  # per consensus: (sample, row, aligned rt)
    if len(active) >= 2:
        grouper = oms.FeatureGroupingAlgorithmKD()
        set_params(
            grouper,
            {
                "link:mz_tol": float(params["mz_tol_ppm"]),
                "link:rt_tol": float(params["rt_tol_s"]),
                "mz_unit": "ppm",
                "warp:enabled": bool(params["warp"]),
            },
        )
        cmap = oms.ConsensusMap()
        grouper.group([fmaps[s] for s in active], cmap)
        for cf in cmap:
            groups.append(
                [(active[h.getMapIndex()], int(h.getUniqueId()) - 1, float(h.getRT())) for h in cf.getFeatureList()]
            )
    elif active:
        s = active[0]
        groups = [[(s, i, float(f.getRT()))] for i, f in enumerate(fmaps[s])]

    if params["merge_split"]:
        groups, n_merged = merge_split_consensus(groups, features, float(params["mz_tol_ppm"]))
        if n_merged:
            log.info("%d consensus features joined to another at the same m/z (%d -> %d): their elution ranges "
                     "overlap by half the shorter one and their samples do not overlap, or only in a few runs where "
                     "the trace was cut into touching pieces (one broad or flat peak whose apex moved); link: "
                     "{merge_split: false} keeps them apart", n_merged, len(groups) + n_merged, len(groups))
    # Intensities and positions come from the tables (the handles carry float32 copies).
    mz_of = {s: features[s]["mz"].to_numpy() for s in samples}
    inten_of = {s: features[s]["intensity"].to_numpy() for s in samples}
    fid_of = {s: features[s]["feature_id"].to_list() for s in samples}
    width_of = {s: _peak_widths(features[s]) for s in samples}
    rows, link_rows = [], []
    for members in groups:
        values: dict[str, float] = {}
        for s, i, _ in members:
            # KD links one feature per sample; a run holds two only where merge_split joined the pieces of one
            # trace, whose areas add up to the trace's
            values[s] = values.get(s, 0.0) + float(inten_of[s][i])
        mz = float(np.mean([mz_of[s][i] for s, i, _ in members]))
        rt = float(np.mean([rt for _, _, rt in members]))
        rows.append({"mz": mz, "rt_s": rt, "n_detected": len(values), **values})
        link_rows.append([(s, fid_of[s][i], rt_s, width_of[s][i]) for s, i, rt_s in members])

    schema = {k: t for k, t in tables.FEATURE_MATRIX_KEYS.items() if k != "consensus_id"}
    schema |= {s: pl.Float64 for s in samples}
    body = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    body = body.with_columns(
        _links=pl.Series(
            link_rows,
            dtype=pl.List(pl.Struct({"sample_id": pl.Utf8, "feature_id": pl.Utf8, "rt_aligned_s": pl.Float64,
                                     "peak_width_s": pl.Float64})),
        )
    )
    body = body.sort(["mz", "rt_s"]).with_columns(consensus_id=pl.format("C{}", pl.int_range(1, pl.len() + 1)))
    links = (
        body.select("consensus_id", "_links")
        .explode("_links")
        .unnest("_links")
        .drop_nulls("feature_id")
        .select(list(LINKS))
        .cast(LINKS)
    )
    matrix = body.select(["consensus_id", *schema]).cast(
        {**tables.FEATURE_MATRIX_KEYS, **{s: pl.Float64 for s in samples}}
    )
    matrix = tables.conform(matrix, tables.FEATURE_MATRIX_KEYS)
    alignment = _with_residuals(alignment, links, reference)
    log.info("%d consensus features over %d samples", matrix.height, len(samples))
    return LinkResult(matrix=matrix, alignment=alignment, links=links)


def _peak_widths(features: pl.DataFrame) -> list[float | None]:
    """Per feature (table order) its peak width in seconds: ``fwhm_s`` where detection gave one (> 0), else half of
    ``rt_end_s - rt_start_s`` (the hull spans about two FWHM of a Gaussian peak, as ``stages.spectra`` reads it);
    None where neither is positive."""
    hull = (pl.col("rt_end_s") - pl.col("rt_start_s")).cast(pl.Float64) / 2
    fwhm = pl.col("fwhm_s").cast(pl.Float64) if "fwhm_s" in features.columns else pl.lit(None, pl.Float64)
    width = pl.when(fwhm > 0).then(fwhm).when(hull > 0).then(hull).otherwise(None)
    return features.select(width.alias("w"))["w"].to_list()


# Two consensus features at one m/z are one peak when their elution ranges overlap by at least this share of the
# shorter range (``merge_split_consensus``).
MERGE_MIN_OVERLAP = 0.5
# ... and a run may hold a feature in both when its two features are pieces of one trace: the later starts at most
# this long after the earlier ends (the feature finder cut a plateau at a dip, so the pieces touch; two isomers
# resolved by the column are separated by more). At most MAX_SHARED_SHARE of the joined runs (at least one) may hold
# two pieces: where most runs resolve two peaks at one m/z, they are two compounds and stay apart.
PIECE_GAP_S = 2.0
MAX_SHARED_SHARE = 0.2


def _pieces_of_one_trace(ranges: list[tuple[float, float]]) -> bool:
    """True when the raw elution ranges (start, end) s of one run's features follow each other without a gap longer
    than PIECE_GAP_S."""
    ranges = sorted(ranges)
    end = ranges[0][1]
    for start, stop in ranges[1:]:
        if start - end > PIECE_GAP_S:
            return False
        end = max(end, stop)
    return True


def merge_split_consensus(groups: list[list[tuple[str, int, float]]], features: dict[str, pl.DataFrame],
                          mz_tol_ppm: float) -> tuple[list[list[tuple[str, int, float]]], int]:
    """Join consensus features that are one compound split by where its apex was placed.

    A long or flat elution profile (a background ion present through much of the run, a broad or tailing peak) has
    no stable apex: small per-run differences in its shape move the feature finder's apex by tens of seconds, so
    linking on apex RT (``rt_tol_s``) puts the runs into several consensus features at the same m/z, each missing
    in the others' runs. Such a split looks like a feature absent from half the study, and when it happens to
    follow the groups it becomes a false difference. Two consensus features are joined when their m/z lie within
    ``mz_tol_ppm`` and their elution ranges (median aligned start and end of each one's features) overlap by at
    least ``MERGE_MIN_OVERLAP`` of the shorter range, and no run holds a feature in both, except runs where the
    feature finder cut the trace into pieces: there the two features must follow each other within ``PIECE_GAP_S``
    (raw RT), and such runs may be at most ``MAX_SHARED_SHARE`` of the joined runs (at least one). A run with two
    peaks at that m/z in most runs (isomers) keeps them apart. Pairs are joined closest apex first, and a join
    whose runs would break these rules is skipped. The pieces of one run then stay as that run's features of the
    joined consensus feature (the matrix sums them: the whole trace, as the runs with one feature measure it).
    Pieces of one plateau that the feature finder cut at different places in different runs and that do not
    overlap stay apart. The same idea as merging neighbouring chromatographic peaks in xcms (``refineChromPeaks``
    with ``MergeNeighboringPeaksParam``), applied across runs as well as within one.

    ``groups``: per consensus feature, its members (sample, row in ``features[sample]``, aligned RT s);
    ``features``: each sample's features table (``rt_s``, ``rt_start_s``, ``rt_end_s``, ``mz`` in raw RT s).
    Returns the groups after joining (members concatenated) and the number of consensus features joined away.
    """
    if len(groups) < 2:
        return groups, 0
    cols = {s: {c: features[s][c].to_numpy() for c in ("mz", "rt_s", "rt_start_s", "rt_end_s")} for s in features}
    n = len(groups)
    mz, apex, lo, hi = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    runs: list[dict[str, list[tuple[float, float]]]] = []  # per consensus: run -> raw elution ranges of its features
    for g, members in enumerate(groups):
        shift = [rt - cols[s]["rt_s"][i] for s, i, rt in members]  # raw -> aligned, per member
        mz[g] = np.mean([cols[s]["mz"][i] for s, i, _ in members])
        apex[g] = np.median([rt for _, _, rt in members])
        lo[g] = np.median([cols[s]["rt_start_s"][i] + d for (s, i, _), d in zip(members, shift, strict=True)])
        hi[g] = np.median([cols[s]["rt_end_s"][i] + d for (s, i, _), d in zip(members, shift, strict=True)])
        ranges: dict[str, list[tuple[float, float]]] = {}
        for s, i, _ in members:
            ranges.setdefault(s, []).append((float(cols[s]["rt_start_s"][i]), float(cols[s]["rt_end_s"][i])))
        runs.append(ranges)

    def joinable(a: dict[str, list[tuple[float, float]]], b: dict[str, list[tuple[float, float]]]) -> bool:
        shared = a.keys() & b.keys()
        if len(shared) > max(1, int(MAX_SHARED_SHARE * len(a.keys() | b.keys()))):
            return False
        return all(_pieces_of_one_trace(a[s] + b[s]) for s in shared)

    order = np.argsort(mz)
    pairs = []
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1:]:
            if (mz[b] - mz[a]) > mz_tol_ppm * 1e-6 * mz[a]:
                break
            overlap = min(hi[a], hi[b]) - max(lo[a], lo[b])
            if overlap > 0 and overlap >= MERGE_MIN_OVERLAP * min(hi[a] - lo[a], hi[b] - lo[b]) \
                    and joinable(runs[a], runs[b]):
                pairs.append((abs(apex[a] - apex[b]), int(a), int(b)))
    root = list(range(n))

    def find(g: int) -> int:
        while root[g] != g:
            root[g] = root[root[g]]
            g = root[g]
        return g

    held = {g: runs[g] for g in range(n)}
    for _, a, b in sorted(pairs):
        ra, rb = find(a), find(b)
        if ra == rb or not joinable(held[ra], held[rb]):
            continue
        root[rb] = ra
        joined_runs = held.pop(rb)
        held[ra] = {s: held[ra].get(s, []) + joined_runs.get(s, []) for s in held[ra].keys() | joined_runs.keys()}
    joined: dict[int, list[tuple[str, int, float]]] = {}
    for g, members in enumerate(groups):
        joined.setdefault(find(g), []).extend(members)
    return list(joined.values()), n - len(joined)


def _with_residuals(alignment: pl.DataFrame, links: pl.DataFrame, reference: str) -> pl.DataFrame:
    """``alignment`` with each sample's median |aligned RT - reference RT| (s) over the consensus features it shares
    with the reference run, and their number (null and 0 when it shares none; 0 s for the reference itself)."""
    ref = links.filter(pl.col("sample_id") == reference).select("consensus_id", ref_rt=pl.col("rt_aligned_s"))
    residuals = (
        links.join(ref, on="consensus_id", how="inner")
        .group_by("sample_id")
        .agg(rt_residual_median_abs_s=(pl.col("rt_aligned_s") - pl.col("ref_rt")).abs().median(),
             n_shared_with_reference=pl.len().cast(pl.Int32))
    )
    out = alignment.join(residuals, on="sample_id", how="left", maintain_order="left")
    return out.with_columns(pl.col("n_shared_with_reference").fill_null(0)).cast(ALIGNMENT).select(list(ALIGNMENT))


def link_features(features: dict[str, pl.DataFrame], reference: str, params: dict | None = None) -> pl.DataFrame:
    """The study feature matrix: ``tables.FEATURE_MATRIX_KEYS`` then one Float64 column per sample (dict order)."""
    return link_features_full(features, reference, params).matrix


def _cli(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    if len(args.features) != len(args.sample_ids):
        raise InputError(
            f"{len(args.features)} features files but {len(args.sample_ids)} sample ids",
            fix="give one --sample-ids entry per --features file, in the same order",
        )
    if len(set(args.sample_ids)) != len(args.sample_ids):
        raise InputError("duplicate sample ids in --sample-ids", fix="sample ids must be unique")
    features = {s: tables.read_table(p, tables.FEATURES, s) for p, s in zip(args.features, args.sample_ids, strict=True)}
    result = link_features_full(features, args.reference, load_params(args), tuple(args.reference_fallbacks or ()))
    out = Path(args.out)
    write_parquet(result.matrix, out)
    alignment_out = args.alignment_out or out.with_name("alignment.parquet")
    links_out = args.links_out or out.with_name("feature_links.parquet")
    write_parquet(result.alignment, alignment_out)
    write_parquet(result.links, links_out)
    return 0


def register(subparsers) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("link", help="align features onto a reference sample and link them (feature matrix)")
    p.add_argument("--features", required=True, nargs="+", type=Path, help="features.parquet per sample")
    p.add_argument("--sample-ids", required=True, nargs="+", help="sample ids, same order as --features")
    p.add_argument("--reference", required=True, help="sample id whose RT axis the others are aligned to")
    p.add_argument("--reference-fallbacks", nargs="*", default=[],
                   help="runs to align onto, in order, when the reference has no features (the workflow passes the "
                        "sheet's other study samples, then its pooled QCs)")
    p.add_argument("--out", required=True, type=Path, help="feature_matrix.parquet")
    p.add_argument(
        "--alignment-out",
        type=Path,
        default=None,
        help="per-sample alignment summary (default: alignment.parquet beside --out)",
    )
    p.add_argument(
        "--links-out",
        type=Path,
        default=None,
        help="consensus -> sample feature links (default: feature_links.parquet beside --out)",
    )
    add_params_argument(p)
    p.set_defaults(func=_cli)
