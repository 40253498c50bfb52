"""Background ions: identifications resting on a feature that elutes over most of its run, not as a peak.

A chromatographic peak rises and falls within seconds (UHPLC) to a minute (HILIC); an ion that is there through the
whole run (a solvent cluster, a plasticiser or other contaminant of the source, column bleed) is detected as one
"feature" whose half-height width is a large share of the run. DDA fragments such an ion again and again, so its
many spectra are repeated triggers of one ion, not independent evidence; and a name given to it is a name for
something that does not elute like a compound of the sample (a fresh user's trial: "Phenazine-1-carboxylic acid"
accepted in a human QC on a feature of half-height width 52 s in a 59 s run, fragmented 47 times).

The rule (``is_background``): a run's feature is a background ion when its half-height width (``fwhm_s`` of the
detect stage) is at least ``BACKGROUND_SHARE`` of its run's RT span, taken from the run's earliest feature start to
its latest feature end (the detect stage's hulls; on the trial's two Q Exactive excerpts this equals the first and
last MS1 scan). A consensus feature is marked when this holds in half or more of the runs whose feature is linked
to it. Why the half-height width and not the hull: a sharp peak with a long tail has a hull over most of a short run
(the trial's "Myristamidopropyl betaine": hull 48 of 59 s, half-height width 2.8 s), a background ion's half-height
width is that long itself. Measured on the trial's runs: in the two 60 s Q Exactive excerpts 313 and 306 of 2297
and 2186 features have half-height widths of half the run or more (a dip in the distribution between 0.3 and 0.5 of
the run), among the accepted names only the phenazine (0.88 and 1.0 of the run), the other five 0.04-0.06; the five
accepted pesticides of the 39 s TripleTOF excerpt 0.07-0.13. An ordinary peak of a 10-30 minute run cannot reach it:
half of 600 s is 300 s, five times the detect stage's ``max_fwhm_s`` (60 s, ``width_filtering: fixed``), and on a
simulated 10-minute study the widest feature had 20 s (0.03 of its run). In a short excerpt the mark may also fall on
a broad peak cut by the excerpt's ends; the note says so. A mark informs: it does not change acceptance (no
measurement yet says how often such names are wrong). Without ``fwhm_s`` in the features tables (tables written
before the detect stage kept it) nothing is marked.

A broad peak under a compound's peak. An ion of the same m/z eluting over tens of seconds (a background ion of a
longer run, or peaks merged) swallows a compound's own narrow peak: detection reports one feature, wide, whose area is
mostly the broad ion's (trial AC: "Fenobucarb" named on a feature of hull 50 s in a 60 s excerpt, its fold change
1.67x up where the compound's was 0.84x, with no mark; half-height width 25-32 s beside the run's median of about
5 s, and under half of the run in most runs, so the rule above missed it). So a feature is also marked when its
half-height width is at least ``BROAD_PEAK_RATIO`` times the median half-height width of its run's features.
Measured on a spike-in study on the real Q Exactive excerpt (session 40, 16 runs): the runs' median was 4.8-5.2 s,
and 177 of 4,118 consensus features (4.3 %) were marked by this rule alone; of the 60 spiked compounds (true
half-height widths 1.6-3.3 s) two had a feature that broad (31.5 and 21.9 s), both under a background ion of their
m/z holding 90-200 times their abundance, and a third, under an ion of 18.4 s (3.5 times the median), was not reached.
The ratio says nothing about which part is the compound: the note says that the value may not be the named
compound's.

The mark is written at the end of the identification's ``evidence_note``, starting ``NOTE_START``, so the report can
show it apart (``background_part``, ``other_part``). May import ``ms2study.core``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ms2study.core.errors import InputError

log = logging.getLogger(__name__)

# a feature whose half-height width is at least this share of its run's RT span is no chromatographic peak
BACKGROUND_SHARE = 0.5
# a feature whose half-height width is at least this many times its run's median is a broad ion that may hold a
# compound's narrower peak (module docstring)
BROAD_PEAK_RATIO = 4.0
NOTE_START = "background ion: "
BROAD_START = NOTE_START + "a broad peak, "  # the broad-peak rule's note (background_notes), told apart by it
# evidence_note of a name that passed q but rests on blank runs' spectra only (no study sample, no QC run):
# written by stages.identify, read by the report's refusal reasons
BLANK_ONLY_NOTE = ("not accepted: only blank runs' spectra support this name (no study sample's or QC run's spectrum "
                   "does); it describes what a blank holds, e.g. a contaminant or carry-over, not the study's samples")
# the start of the evidence_note of a name left on the other part of one elution split over two consensus features
# (identification.samename.named_once), read by the report's refusal reasons
SPLIT_NOTE = "named once, on "
# the features tables' columns read (fwhm_s optional)
EXTENT_COLUMNS = ("sample_id", "feature_id", "rt_start_s", "rt_end_s")
# runs named in one note; more are counted
NOTE_RUNS = 3


def read_extents(paths: Sequence[str | Path]) -> pl.DataFrame:
    """sample_id, feature_id, rt_start_s, rt_end_s and fwhm_s (s; null when the table lacks it) of every feature in
    the detect stage's features tables ``paths`` (one per run). Raises InputError naming a file that is missing or
    lacks the other columns."""
    frames = []
    for path in paths:
        if not Path(path).exists():
            raise InputError("features table does not exist", file=str(path), fix="run the detect stage first")
        names = pl.read_parquet_schema(path)
        missing = [c for c in EXTENT_COLUMNS if c not in names]
        if missing:
            raise InputError(f"features table lacks columns {missing}", file=str(path),
                             fix="rerun the detect stage for this run")
        frame = pl.read_parquet(path, columns=[*EXTENT_COLUMNS, *(["fwhm_s"] if "fwhm_s" in names else [])])
        if "fwhm_s" not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("fwhm_s"))
        frames.append(frame.select(pl.col("sample_id").cast(pl.Utf8), pl.col("feature_id").cast(pl.Utf8),
                                   *[pl.col(c).cast(pl.Float64) for c in ("rt_start_s", "rt_end_s", "fwhm_s")]))
    return pl.concat(frames) if frames else pl.DataFrame(schema={"sample_id": pl.Utf8, "feature_id": pl.Utf8,
                                                                  "rt_start_s": pl.Float64, "rt_end_s": pl.Float64,
                                                                  "fwhm_s": pl.Float64})


def is_background(extents: pl.DataFrame) -> pl.DataFrame:
    """``extents`` (``read_extents``'s columns, any number of runs) with the run's RT span (``run_start_s``,
    ``run_end_s``: its earliest feature start and latest feature end, s), ``background`` (Boolean: the feature's
    ``fwhm_s`` is at least ``BACKGROUND_SHARE`` of that span; False when fwhm_s is null or the span is 0), the run's
    median positive ``fwhm_s`` (``run_fwhm_s``) and ``broad`` (Boolean: ``fwhm_s`` at least ``BROAD_PEAK_RATIO``
    times it, and not ``background``; False when either is null)."""
    span = pl.col("run_end_s") - pl.col("run_start_s")
    return extents.with_columns(pl.col("rt_start_s").min().over("sample_id").alias("run_start_s"),
                                pl.col("rt_end_s").max().over("sample_id").alias("run_end_s"),
                                pl.col("fwhm_s").filter(pl.col("fwhm_s") > 0).median().over("sample_id")
                                .alias("run_fwhm_s")).with_columns(
        ((span > 0) & (pl.col("fwhm_s") >= BACKGROUND_SHARE * span)).fill_null(False).alias("background")
    ).with_columns((~pl.col("background") & (pl.col("fwhm_s") >= BROAD_PEAK_RATIO * pl.col("run_fwhm_s")))
                   .fill_null(False).alias("broad"))


def background_notes(links: pl.DataFrame, extents: pl.DataFrame) -> pl.DataFrame:
    """consensus_id and ``background_note`` (Utf8) of every consensus feature whose linked features (``links``:
    consensus_id, sample_id, feature_id) are background ions (``is_background``) in half or more of the runs that
    detected it: "background ion: half-height width at least 50 % of the run's RT span in 2 of the 2 run(s)
    detecting it (QC04: 52.3 of 59.1 s, feature 240.5-299.6 s, run 240.5-299.6 s; QC05: ...): an ion present through
    the run, ..."; else of those that are broad (``broad``) or background ions in half or more of them: "background
    ion: a broad peak, half-height width at least 4 times its run's median in 3 of the 4 run(s) detecting it (S01:
    31.5 s, the run's median 5.2 s; ...): ..."; the other consensus features are absent."""
    rows = (links.select(pl.col("consensus_id").cast(pl.Utf8), pl.col("sample_id").cast(pl.Utf8),
                         pl.col("feature_id").cast(pl.Utf8))
            .join(is_background(extents), on=["sample_id", "feature_id"], how="inner"))

    def s(column: str | pl.Expr) -> pl.Expr:
        return (pl.col(column) if isinstance(column, str) else column).round(1).cast(pl.Utf8)

    run = (pl.col("sample_id") + pl.lit(": ") + s("fwhm_s") + pl.lit(" of ")
           + s(pl.col("run_end_s") - pl.col("run_start_s")) + pl.lit(" s, feature ") + s("rt_start_s") + pl.lit("-")
           + s("rt_end_s") + pl.lit(" s, run ") + s("run_start_s") + pl.lit("-") + s("run_end_s") + pl.lit(" s"))
    wide = (pl.col("sample_id") + pl.lit(": ") + s("fwhm_s") + pl.lit(" s, the run's median ") + s("run_fwhm_s")
            + pl.lit(" s"))
    either = pl.col("background") | pl.col("broad")
    per = (rows.sort(["consensus_id", "sample_id"]).group_by("consensus_id", maintain_order=True).agg(
        pl.len().alias("_runs"), pl.col("background").sum().alias("_marked"), either.sum().alias("_wide"),
        run.filter(pl.col("background")).head(NOTE_RUNS).alias("_where"),
        pl.when(pl.col("background")).then(run).otherwise(wide).filter(either).head(NOTE_RUNS).alias("_where_wide"))
           .filter(pl.col("_wide") * 2 >= pl.col("_runs")))
    through = pl.col("_marked") * 2 >= pl.col("_runs")
    count = pl.when(through).then(pl.col("_marked")).otherwise(pl.col("_wide"))
    more = pl.when(count > NOTE_RUNS).then(
        pl.lit("; and ") + (count - NOTE_RUNS).cast(pl.Utf8) + pl.lit(" more")).otherwise(pl.lit(""))
    runs = (count.cast(pl.Utf8) + pl.lit(" of the ") + pl.col("_runs").cast(pl.Utf8) + pl.lit(" run(s) detecting it ("))
    note = pl.when(through).then(
        pl.lit(NOTE_START + f"half-height width at least {BACKGROUND_SHARE * 100:g} % of the run's RT span in ")
        + runs + pl.col("_where").list.join("; ") + more
        + pl.lit("): an ion present through the run, not a chromatographic peak (a solvent, contaminant or bleed "
                 "ion, or in a short run a broad peak cut by its ends), so its spectra are repeated triggers of "
                 "one ion, not independent evidence")).otherwise(
        pl.lit(BROAD_START + f"half-height width at least {BROAD_PEAK_RATIO:g} times its run's median "
               "(or half the run) in ")
        + runs + pl.col("_where_wide").list.join("; ") + more
        + pl.lit("): a broad ion of this m/z (a background ion, or peaks merged) under which a compound's own "
                 "narrower peak is summed with it, so the feature's value, and a fold change on it, may not be the "
                 "named compound's; look at the ion's chromatogram"))
    return per.select("consensus_id", note.alias("background_note"))


def mark_background(ident: pl.DataFrame, links: pl.DataFrame, extents: pl.DataFrame) -> pl.DataFrame:
    """``ident`` (identifications: consensus_id, accepted, evidence_note) with the background note
    (``background_notes``) appended to ``evidence_note`` ("; " between) of its accepted rows on background ions;
    rows, columns and their order unchanged. Acceptance is not changed."""
    if ident.height == 0 or extents.height == 0:
        return ident
    notes = background_notes(links, extents)
    marked = ident.join(notes, on="consensus_id", how="left", maintain_order="left")
    note = (pl.when(pl.col("accepted").fill_null(False) & pl.col("background_note").is_not_null())
            .then(pl.concat_str(pl.col("evidence_note"), pl.col("background_note"), separator="; ",
                                ignore_nulls=True))
            .otherwise(pl.col("evidence_note")))
    n = int(marked.select((pl.col("accepted").fill_null(False) & pl.col("background_note").is_not_null()).sum())
            .item())
    log.info("%d accepted identifications rest on a background ion or a broad peak (half-height width >= %g of the "
             "run or >= %g times its median)", n, BACKGROUND_SHARE, BROAD_PEAK_RATIO)
    return marked.with_columns(note.alias("evidence_note")).select(ident.columns)


def background_part(note: pl.Expr) -> pl.Expr:
    """The background mark of an ``evidence_note`` expression, without ``NOTE_START`` (null when it has none)."""
    return note.str.extract(r"(?:^|; )" + NOTE_START + r"(.*)$", 1)


def other_part(note: pl.Expr) -> pl.Expr:
    """An ``evidence_note`` expression without its background mark (null when nothing else is left)."""
    rest = note.str.replace(r"(?:^|; )" + NOTE_START + r".*$", "")
    return pl.when(rest.str.len_chars() > 0).then(rest)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The identify command's ``--features`` option (the detect stage's features tables, for the background mark)."""
    parser.add_argument("--features", nargs="+", default=None,
                        help="optional: features.parquet of every run (detect stage); an accepted name on a feature "
                             f"whose half-height width is {BACKGROUND_SHARE:g} of its run's RT span or more then "
                             "carries a background-ion mark in evidence_note (acceptance unchanged)")


def mark_from_files(ident: pl.DataFrame, links: pl.DataFrame, paths: Sequence[str | Path] | None) -> pl.DataFrame:
    """``mark_background`` with the extents read from the features tables ``paths``; ``ident`` unchanged without
    paths. Raises InputError as ``read_extents``."""
    if not paths:
        return ident
    return mark_background(ident, links, read_extents(paths))
