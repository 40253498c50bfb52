"""Outcomes of a study as model targets: the declaration check, the encoding of a sample-sheet column into a target
vector, the covariates as a numeric matrix, and the folder name of an outcome's results.

An outcome is declared as ``{column, type: binary | multiclass | continuous, positive_class}`` (config
``models: outcomes``). Sample-sheet cells are text; those that ``core.missing.is_missing`` reads as "not recorded"
leave their sample out of that outcome (and are listed). Runs whose ``sample_type`` (sheet column, see
``io.samplesheet.sample_roles``) is qc or blank never enter an outcome: they are listed apart
(``excluded_not_sample``), and the acquisition columns (``ACQUISITION_COLUMNS``: sample_type, injection_order,
batch) are refused as outcomes and covariates, since they describe how the runs were acquired, not the biology.
Used by the outcome models, the differential tests, the attribution and the study-folder checks, which must encode
an outcome identically. Imports only ``core``, ``io.samplesheet`` and ``modelling.runchecks``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.core.missing import is_missing
from ms2study.io.samplesheet import ACQUISITION_COLUMNS, sample_roles
from ms2study.modelling.qc import rt_range
from ms2study.modelling.runchecks import (FAILED_RUN_SHARE, RT_COVERAGE_MIN, RT_COVERAGE_NOTE, class_left_out,
                                          detected_counts, failed_runs, rt_coverage)

OUTCOME_TYPES = ("binary", "multiclass", "continuous")
FLAGGED_WORDS = "consensus features are flagged"  # drop_flagged's note, "N of M ...": read by the report


def check_outcome(spec: Any) -> dict:
    """Validate one outcome declaration ({column, type, positive_class}) and return it as a clean dict."""
    if not isinstance(spec, dict) or "column" not in spec or "type" not in spec:
        raise InputError(f"outcome {spec!r} must be a mapping with 'column' and 'type'",
                         fix="e.g. {column: group, type: binary, positive_class: case}")
    unknown = sorted(set(spec) - {"column", "type", "positive_class"})
    if unknown:
        raise InputError(f"outcome '{spec['column']}' has unknown key(s) {unknown}",
                         fix="allowed keys: column, type, positive_class")
    if str(spec["column"]) in ACQUISITION_COLUMNS:
        raise InputError(f"outcome '{spec['column']}' is an acquisition column of the sample sheet (how the runs were "
                         "acquired, not the biology): it cannot be an outcome",
                         fix="model a biological column; drift and batch are handled by the correct stage")
    if spec["type"] not in OUTCOME_TYPES:
        raise InputError(f"outcome '{spec['column']}' has type '{spec['type']}'",
                         fix=f"use one of {', '.join(OUTCOME_TYPES)}")
    return {"column": str(spec["column"]), "type": spec["type"], "positive_class": spec.get("positive_class")}


def outcome_dirname(column: str) -> str:
    """The folder name of an outcome's results (path-safe form of the column name)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", column).strip(".") or "outcome"


def not_study_samples(samples: pl.DataFrame) -> dict[str, list[str]]:
    """The runs of the sheet that are not study samples, by type: ``{"qc": [ids], "blank": [ids]}`` in sheet order
    (both empty without a ``sample_type`` column). Raises InputError (``io.samplesheet.sample_roles``) for an
    unknown type or a bad injection order."""
    if "sample_type" not in samples.columns:
        return {"qc": [], "blank": []}
    roles = sample_roles(samples.with_columns(pl.col("sample_id").cast(pl.Utf8)))
    return {kind: roles.filter(pl.col("sample_type") == kind)["sample_id"].to_list() for kind in ("qc", "blank")}


def not_sample_note(excluded: dict[str, list[str]]) -> str | None:
    """The sentence a summary carries about the QC and blank runs left out (``not_study_samples``), or None."""
    n_qc, n_blank = len(excluded.get("qc", [])), len(excluded.get("blank", []))
    if not n_qc and not n_blank:
        return None
    return (f"{n_qc} pooled QC run(s) and {n_blank} blank run(s) (sample sheet's sample_type) are not study samples: "
            "left out of this outcome")


def without_empty_runs(samples: pl.DataFrame, matrix: pl.DataFrame, detected: pl.DataFrame | None = None
                       ) -> tuple[pl.DataFrame, str | None]:
    """``samples`` less the study runs that detection found nothing or almost nothing in, and the note saying which
    (None when none).

    Empty: the run's column in the feature ``matrix`` holds no value (null or <= 0 in every feature, e.g. a file with
    one MS1 scan). A second fresh user's trial: such a run was imputed at half the minimum in every feature and made
    76 % of the features look higher in cases, while the report said the run was missing from every result.
    Failed: fewer consensus features with a value in ``detected`` (the linked matrix, consensus features x runs; the
    ``matrix`` itself when None, whose gap-filled values count then) than ``runchecks.FAILED_RUN_SHARE`` of the study
    samples' median (``modelling.runchecks.failed_runs``, at least 3 study samples): the QC table flags the same
    runs as outliers. A trial's failed injection, kept, filled most features with values at the detection limit and no
    planted difference was found. Only study samples are judged (sheet ``sample_type`` absent, empty or sample): QCs
    and blanks never enter tests or models, and a blank with no value left once the features found in the blanks are
    excluded is what a clean blank should be."""
    other = {s for ids in not_study_samples(samples).values() for s in ids}
    ids = [s for s in samples["sample_id"].cast(pl.Utf8).to_list() if s in matrix.columns and s not in other]
    if not ids or matrix.height == 0:
        return samples, None
    counts = detected_counts(matrix, ids)
    empty = [s for s in ids if not counts[s]]
    found = detected_counts(detected, ids) if detected is not None else counts
    failed, median = failed_runs({s: found[s] for s in ids if s not in empty})
    notes = []
    if empty:
        notes.append(f"{len(empty)} run(s) without any feature value left out (detection found nothing: see their "
                     f"detect logs): {', '.join(empty[:10])}" + (", ..." if len(empty) > 10 else ""))
    if failed:
        notes.append(f"{len(failed)} run(s) with under {FAILED_RUN_SHARE:.0%} of the study samples' median number of "
                     f"detected consensus features ({median:.0f}) left out as failed runs: "
                     + ", ".join(f"{s} ({found[s]})" for s in failed[:10]) + (", ..." if len(failed) > 10 else "")
                     + ". Their missing features would be filled as below detection; if such a run is a real "
                     "sample (e.g. far more dilute), study it apart")
    if not notes:
        return samples, None
    return samples.filter(~pl.col("sample_id").cast(pl.Utf8).is_in(empty + failed)), "; ".join(notes)


def without_unmeasured_runs(samples: pl.DataFrame, qc: pl.DataFrame
                            ) -> tuple[pl.DataFrame, list[str], dict[str, tuple[float, float]]]:
    """``samples`` less the runs whose acquisition covers less than ``runchecks.RT_COVERAGE_MIN`` of the study's
    typical RT range, the notes saying which, and the RT ranges (s) of the runs kept that cover less than
    ``RT_COVERAGE_NOTE`` of it (named in a note too): their cells of features eluting outside their range are not
    measured (``modelling.cells``).

    ``qc``: the QC table (``results/study/qc.parquet``: sample_id, rt_start_s, rt_end_s, the run's first and last
    scan in s). The typical range is ``runchecks.rt_coverage``'s over the runs of ``samples`` found in ``qc``
    (medians of their first and last scans); with fewer than 3 such runs nothing is left out. A consensus feature
    eluting outside a run's range was never measured in that run, but the tests and models would impute it as if
    below detection: a fresh user's trial put a run acquired over another RT window
    beside the others, and every feature of theirs counted as absent in it (as for a run without features,
    ``without_empty_runs``). Coverage: ``runchecks.rt_overlap(typical range, run range)``'s share.
    """
    if qc.height == 0 or not {"sample_id", "rt_start_s", "rt_end_s"} <= set(qc.columns):
        return samples, [], {}
    wanted = set(samples["sample_id"].cast(pl.Utf8).to_list())
    ranges = {str(r["sample_id"]): (float(r["rt_start_s"]), float(r["rt_end_s"])) for r in qc.iter_rows(named=True)
              if str(r["sample_id"]) in wanted and r["rt_start_s"] is not None and r["rt_end_s"] is not None
              and r["rt_end_s"] >= r["rt_start_s"]}
    typical, coverage = rt_coverage(ranges)
    if typical is None:
        return samples, [], {}

    def named(runs: list[str]) -> str:
        return ", ".join(f"{s} ({ranges[s][0]:.1f}-{ranges[s][1]:.1f} s, {coverage[s]:.1%})" for s in runs[:8]) + (
            ", ..." if len(runs) > 8 else "")

    order = [s for s in samples["sample_id"].cast(pl.Utf8).to_list() if s in ranges]
    out = [s for s in order if coverage[s] < RT_COVERAGE_MIN]
    partial = [s for s in order if RT_COVERAGE_MIN <= coverage[s] < RT_COVERAGE_NOTE]
    notes = []
    where = (f"the study's typical RT range ({typical[0]:.1f}-{typical[1]:.1f} s, the median first and last scan of "
             "its runs)")
    if out:
        notes.append(f"{len(out)} run(s) measured less than {RT_COVERAGE_MIN:.0%} of {where} and are left out: "
                     f"{named(out)}. Features eluting outside a run's range were never measured in it and would "
                     "count as below detection; acquire the runs over one gradient, or study them apart")
    if partial:
        notes.append(f"{len(partial)} run(s) measured only part of {where}: {named(partial)}. A feature eluting "
                     "outside a run's range was not measured in it: its value there is the feature's mean over the "
                     "runs that measured it, not a value below detection")
    return (samples.filter(~pl.col("sample_id").cast(pl.Utf8).is_in(out)), notes,
            {s: ranges[s] for s in partial})


def runs_measured(samples: pl.DataFrame, qc_path: str | Path | None, chromatograms: list[str] | None = None
                  ) -> tuple[pl.DataFrame, list[str], dict[str, tuple[float, float]]]:
    """``without_unmeasured_runs`` on the runs' RT ranges: from ``chromatograms`` (the detect stage's chromatogram
    tables, one per sheet row in sheet order: the stages' ``--chromatograms``) when given, else from the study's QC
    table (``--qc``); ``samples`` unchanged, no note and no range when neither is given. The chromatograms depend on
    detection alone, so a stage reading them is not rerun when the annotations (and so the QC table) change, e.g.
    with ``annotate: fdr``. Raises InputError naming a missing file or a list whose length is not the sheet's."""
    if chromatograms:
        ids = samples["sample_id"].cast(pl.Utf8).to_list()
        if len(chromatograms) != len(ids):
            raise InputError(f"--chromatograms has {len(chromatograms)} path(s) for {len(ids)} sample(s)",
                             fix="give one chromatogram table per sample of the sheet, in sheet order")
        for sample, path in zip(ids, chromatograms):
            if not Path(path).exists():
                raise InputError("the chromatogram table does not exist", file=str(path), sample=sample,
                                 fix="run the detect stage for that sample")
        ranges = [rt_range(p) for p in chromatograms]
        return without_unmeasured_runs(samples, pl.DataFrame(
            {"sample_id": ids, "rt_start_s": [r[0] for r in ranges], "rt_end_s": [r[1] for r in ranges]},
            schema={"sample_id": pl.Utf8, "rt_start_s": pl.Float64, "rt_end_s": pl.Float64}))
    if qc_path is None:
        return samples, [], {}
    if not Path(qc_path).exists():
        raise InputError("the QC table does not exist", file=str(qc_path),
                         fix="run the qc stage, or leave --qc out")
    return without_unmeasured_runs(samples, pl.read_parquet(qc_path))


def add_run_range_arguments(parser: Any) -> None:
    """The ``--chromatograms`` and ``--qc`` options of the stages that call ``runs_measured`` (an argparse
    parser)."""
    parser.add_argument("--chromatograms", nargs="+", default=None, metavar="CHROMATOGRAM",
                        help="results/samples/<id>/chromatogram.parquet, one per sample of the sheet in sheet order: "
                             "each run's RT range; runs that measured less than half of the study's typical range "
                             "are left out (preferred over --qc: they depend on detection only)")
    parser.add_argument("--qc", default=None, metavar="QC_TABLE",
                        help="results/study/qc.parquet: each run's RT range, as --chromatograms (default: no check)")


def encode_outcome(samples: pl.DataFrame, spec: dict) -> dict:
    """The outcome's target vector for the study samples that have a value; samples without one are listed.

    Runs whose ``sample_type`` is qc or blank are left out first, whatever their outcome cell holds, and listed in
    ``excluded_not_sample`` ({"qc": [...], "blank": [...]}). Binary: 1 = ``positive_class`` (default:
    1/true/yes if present, else the last class in sorted order). Multiclass: class index in sorted order; when
    three or more classes leave at least two of 2+ samples, a class of a single sample is left out and listed in
    ``excluded_small_class`` ({class: [sample_id]}) and worded in ``notes`` (``small_class_note``; else no key).
    Continuous: the value as float. Raises InputError for an acquisition column, a column not in the sheet, a
    continuous value that is not a number, classes that differ only in letter case, a binary outcome with more
    than two classes or an unknown positive_class.
    """
    column, kind = spec["column"], spec["type"]
    if column in ACQUISITION_COLUMNS:
        check_outcome(spec)  # raises: an acquisition column is never an outcome
    if column not in samples.columns:
        raise InputError(f"outcome column '{column}' is not in the sample sheet (columns: {', '.join(samples.columns)})",
                         file="samples.tsv", fix="add the column or remove the outcome from config.yaml")
    excluded = not_study_samples(samples)
    left_out = set(excluded["qc"]) | set(excluded["blank"])
    ids = samples["sample_id"].cast(pl.Utf8).to_list()
    raw = samples[column].to_list()
    keep = [i for i, v in enumerate(raw) if not is_missing(v) and ids[i] not in left_out]
    kept = set(keep)
    missing = [ids[i] for i in range(len(ids)) if i not in kept and ids[i] not in left_out]
    values = [str(raw[i]).strip() for i in keep]
    result: dict[str, Any] = {"sample_ids": [ids[i] for i in keep], "excluded_missing_outcome": missing,
                              "excluded_not_sample": excluded}
    if kind == "continuous":
        y = np.empty(len(values))
        for j, v in enumerate(values):
            try:
                y[j] = float(v)
            except ValueError as err:
                raise InputError(f"outcome '{column}' is continuous but has the value '{v}'",
                                 sample=result["sample_ids"][j], file="samples.tsv",
                                 fix="use numbers (or NA for missing), or declare the outcome multiclass") from err
        result.update(y=y, classes=None, positive_class=None)
        return result
    classes = sorted(set(values), key=_class_sort_key)
    folded: dict[str, list[str]] = {}
    for c in classes:
        folded.setdefault(c.casefold(), []).append(c)
    alike = next((group for group in folded.values() if len(group) > 1), None)
    if alike:  # 'b' beside 'B' (a trial): a class of one that stops the tests of the others
        sizes = " and ".join(f"'{c}' ({values.count(c)} sample(s))" for c in alike)
        raise InputError(f"outcome '{column}' has classes that differ only in letter case: {sizes}",
                         file="samples.tsv",
                         fix=f"write each class of '{column}' the same way in the sample sheet")
    if kind == "binary":
        if len(classes) > 2:
            # with each class's count: a typo ('contorl' beside 'control') shows as a class of one or two
            sizes = ", ".join(f"'{c}' ({values.count(c)})" for c in classes[:8]) + (", ..." if len(classes) > 8 else "")
            numeric = all(_is_number(c) for c in classes)
            raise InputError(f"outcome '{column}' is binary but has {len(classes)} classes: {sizes}",
                             file="samples.tsv",
                             fix=("its values are numbers: declare it 'type: continuous' under models: outcomes "
                                  "in config.yaml (or recode it to two classes)") if numeric and len(classes) > 4 else
                             "correct a misspelt class, declare the outcome multiclass, or recode it to two classes")
        positive = spec.get("positive_class")
        if positive is not None and _match_class(positive, classes) is None and len(classes) < 2:
            return class_left_out(result, positive, classes, len(values))
        if positive is not None:
            positive = _match_class(positive, classes)
            if positive is None:
                found = ", ".join(classes)
                raise InputError(f"positive_class '{spec['positive_class']}' of outcome '{column}' (config "
                                 f"models.outcomes) is not a class of the sample sheet's column '{column}', whose "
                                 f"study samples have: {found}", file="config.yaml",
                                 fix=f"set positive_class of outcome '{column}' under models: outcomes in config.yaml "
                                     f"to one of: {found}")
        else:
            lowered = {c.lower(): c for c in classes}
            positive = next((lowered[t] for t in ("1", "true", "yes", "case") if t in lowered), classes[-1])
        if len(classes) == 2:
            negative = next(c for c in classes if c != positive)
            classes = [negative, positive]
        y = np.array([1 if v == positive else 0 for v in values], dtype=np.int64)
        result.update(y=y, classes=classes, positive_class=positive)
        return result
    single = [c for c in classes if values.count(c) == 1]
    if single and len(classes) - len(single) >= 2:
        # a genuine class of one sample (a trial: three groups and one 'd'): no test or model can use it, and kept
        # it stopped the outcome's tests of the other classes; its samples are left out and named instead
        result["excluded_small_class"] = {c: [result["sample_ids"][values.index(c)]] for c in single}
        kept_rows = [j for j, v in enumerate(values) if v not in single]
        result["sample_ids"] = [result["sample_ids"][j] for j in kept_rows]
        values = [values[j] for j in kept_rows]
        classes = [c for c in classes if c not in single]
        result["notes"] = [small_class_note(result)]
    index = {c: i for i, c in enumerate(classes)}
    result.update(y=np.array([index[v] for v in values], dtype=np.int64), classes=classes, positive_class=None)
    return result


def small_class_note(target: dict) -> str | None:
    """The note naming the classes of one sample that ``encode_outcome`` left out of a multiclass outcome, or None."""
    small = target.get("excluded_small_class") or {}
    if not small:
        return None
    named = ", ".join(f"'{c}' ({', '.join(ids)})" for c, ids in small.items())
    return (f"{len(small)} class(es) with a single sample left out of the tests and models of this outcome: {named} "
            "(a class needs at least 2 samples; correct a misspelt class in the sample sheet, or add samples)")


def _class_sort_key(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _match_class(wanted: Any, classes: list[str]) -> str | None:
    """Match a configured class to the sheet's strings: YAML reads `1` as int and `yes` as True."""
    candidates = {str(wanted), str(wanted).lower()}
    if isinstance(wanted, bool):
        candidates |= {"1", "yes"} if wanted else {"0", "no"}
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        candidates.add(f"{float(wanted):g}")
    for c in classes:
        if c in candidates or c.lower() in candidates:
            return c
    return None


def too_few_samples(target: dict, kind: str) -> str | None:
    """Why an encoded outcome (``encode_outcome``) cannot be modelled, or None: a continuous outcome needs 6 samples
    and some variation, classes need two classes of at least 2 samples each."""
    n = len(target["sample_ids"])
    if kind == "continuous":
        if n < 6:
            return f"only {n} samples with a value (at least 6 needed)"
        if np.ptp(target["y"]) == 0:
            return "the outcome has the same value in every sample"
        return None
    counts = np.bincount(target["y"], minlength=len(target["classes"]))
    if len(target["classes"]) < 2:
        return f"only one class ({target['classes']}) among the samples with a value"
    if counts.min() < 2:
        smallest = target["classes"][int(counts.argmin())]
        return f"class '{smallest}' has {int(counts.min())} sample(s); at least 2 per class are needed"
    return None


def check_covariates(columns: list[str]) -> None:
    """Raise InputError when a covariate is an acquisition column (``ACQUISITION_COLUMNS``): batch and drift are
    corrected in the feature matrix (the correct stage), never modelled as biology."""
    bad = [c for c in columns if c in ACQUISITION_COLUMNS]
    if bad:
        raise InputError(f"covariate(s) {bad} are acquisition columns of the sample sheet (how the runs were acquired, "
                         "not the biology)", fix="remove them from models: covariates in config.yaml; batch and drift "
                         "are handled by the correct stage (config section correct)")


def _is_number(text: Any) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def check_covariate_values(samples: pl.DataFrame, columns: list[str], source: str = "samples.tsv") -> None:
    """Refuse a covariate column whose recorded values are mostly numbers (2 or more, and at least as many as the
    others) beside some that are not (``52,0`` with a decimal comma, ``#N/A`` from Excel): it would be coded as one
    level per value (``covariate_matrix``), a trial's age became 8 indicators for 8 samples and left the tests no
    degrees of freedom, unsaid. Also a column of numbers all written with a decimal comma, and text levels that differ
    only in letter case. Raises InputError naming the file, the column, the samples and their values."""
    ids = samples["sample_id"].cast(pl.Utf8).to_list()
    for column in (c for c in columns if c in samples.columns):
        recorded = [(sid, str(v).strip()) for sid, v in zip(ids, samples[column].to_list()) if not is_missing(v)]
        odd = [(sid, v) for sid, v in recorded if not _is_number(v)]
        numbers = len(recorded) - len(odd)
        # every value a number written with a decimal comma (a European Excel export: trial W's ages 45,8 became 11
        # categories for 12 samples, no test was left, and a false design caution followed)
        commas = [(sid, v) for sid, v in odd if re.fullmatch(r"[+-]?\d+,\d+", v)]
        if commas and len(commas) == len(odd):
            raise InputError(f"covariate '{column}' holds numbers written with a decimal comma ({commas[0][0]}: "
                             f"'{commas[0][1]}'{' ...' if len(commas) > 1 else ''}); they would be read as categories, "
                             "one per value", file=source, sample=commas[0][0],
                             fix=f"write the values of '{column}' with a decimal point (45.8, not 45,8): save the sheet "
                                 "from Excel with '.' as the decimal separator")
        # levels differing only in letter case (M, F, m, f: four sexes; trial W), as outcomes are refused
        if not numbers and odd:
            by_lower: dict[str, set[str]] = {}
            for _, v in odd:
                by_lower.setdefault(v.lower(), set()).add(v)
            clash = sorted(sorted(vs) for vs in by_lower.values() if len(vs) > 1)
            if clash:
                raise InputError(f"covariate '{column}' has values that differ only in letter case "
                                 f"({'; '.join(', '.join(repr(v) for v in c) for c in clash[:3])}): each would be a "
                                 "level of its own", file=source,
                                 fix=f"write each level of '{column}' one way (e.g. all 'M' and 'F')")
        if odd and numbers >= 2 and numbers >= len(odd):
            listed = ", ".join(f"{sid}: '{v}'" for sid, v in odd[:8]) + (" ..." if len(odd) > 8 else "")
            raise InputError(f"covariate '{column}' holds numbers and {len(odd)} value(s) that are not ({listed}); it "
                             "would be read as categories, one per value", file=source, sample=odd[0][0],
                             fix=f"write the values of '{column}' as numbers with a decimal point (52.0, not 52,0) and "
                                 "leave a missing one empty or NA (not #N/A)")


def covariate_matrix(samples: pl.DataFrame, sample_ids: list[str], columns: list[str]) -> tuple[np.ndarray, list[str]]:
    """Covariate columns of the sample sheet for ``sample_ids``, as numbers: (matrix, column names).

    A column whose recorded values all read as numbers is used as it is (``cov:age``); any other is one-hot coded
    against its first level in sorted order (``cov:sex=M``), which uses only the list of levels, not the outcome,
    so it leaks nothing. Missing values are NaN and are mean-imputed inside the training folds.
    """
    check_covariates(columns)
    check_covariate_values(samples, columns)
    missing = [c for c in columns if c not in samples.columns]
    if missing:
        raise InputError(f"covariate column(s) {missing} are not in the sample sheet (columns: "
                         f"{', '.join(samples.columns)})", file="samples.tsv",
                         fix="add the column(s) or remove them from models: covariates in config.yaml")
    frame = pl.DataFrame({"sample_id": sample_ids}).join(
        samples.select(pl.col("sample_id").cast(pl.Utf8), *[pl.col(c) for c in columns]),
        on="sample_id", how="left", maintain_order="left")
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for column in columns:
        raw = frame[column].to_list()
        text = [None if is_missing(v) else str(v).strip() for v in raw]
        try:
            values = np.array([np.nan if t is None else float(t) for t in text])
            blocks.append(values[:, None])
            names.append(f"cov:{column}")
            continue
        except ValueError:
            pass
        levels = sorted({t for t in text if t is not None}, key=_class_sort_key)
        for level in levels[1:]:
            blocks.append(np.array([np.nan if t is None else float(t == level) for t in text])[:, None])
            names.append(f"cov:{column}={level}")
    matrix = np.hstack(blocks) if blocks else np.empty((len(sample_ids), 0))
    return matrix, names


def drop_flagged(matrix: pl.DataFrame, flags: pl.DataFrame | None,
                 source: str = "feature_matrix_corrected.parquet") -> tuple[pl.DataFrame, str | None]:
    """The consensus features of ``matrix`` that the outcome models and differential tests may use, and a note.

    ``flags``: the corrected matrix (``results/study/feature_matrix_corrected.parquet``, or any table with
    ``consensus_id`` and ``excluded``, true for a feature flagged by the blank filter or the QC RSD threshold); None
    keeps every feature (note None). The rows of ``matrix`` whose consensus_id is flagged are dropped, so either
    the raw or the corrected matrix can be filtered by the corrected matrix's flags. Raises InputError naming
    ``source`` when ``flags`` lacks either column.
    """
    if flags is None:
        return matrix, None
    missing = [c for c in ("consensus_id", "excluded") if c not in flags.columns]
    if missing:
        raise InputError(f"the flags table lacks column(s) {missing}", file=source,
                         fix="pass results/study/feature_matrix_corrected.parquet (rerun the correct stage)")
    flagged = flags.filter(pl.col("excluded").fill_null(False))["consensus_id"].cast(pl.Utf8)
    keep = ~matrix["consensus_id"].cast(pl.Utf8).is_in(flagged.implode())
    n_out = int((~keep).sum())
    note = (f"{n_out} of {matrix.height} {FLAGGED_WORDS} (blank filter or QC RSD; excluded in "
            f"{source}) and left out (correct.exclude_flagged)")
    return matrix.filter(keep), note


def read_detected_matrix(path: str | Path | None, sample_ids: list[str]) -> pl.DataFrame | None:
    """The linked matrix (``results/study/feature_matrix.parquet``: which values feature detection found) with
    ``consensus_id`` and the columns of ``sample_ids`` it has, or None without a path. Raises InputError naming a
    missing file."""
    if not path:
        return None
    if not Path(path).exists():
        raise InputError("the linked feature matrix does not exist", file=str(path),
                         fix="run the link stage, or leave --detected-matrix out")
    present = set(pl.read_parquet_schema(path))
    return pl.read_parquet(path, columns=["consensus_id", *[s for s in sample_ids if s in present]])


def read_model_matrix(matrix_path: str | Path, flags_path: str | Path | None = None) -> tuple[pl.DataFrame, str | None]:
    """The feature matrix the models use (``feature_matrix.parquet``, or ``feature_matrix_corrected.parquet`` with
    ``correct.use_corrected``; sample columns are picked by the sheet's ids, never by position, so the corrected
    matrix's flag columns are ignored), without the features flagged ``excluded`` in ``flags_path`` (the corrected
    matrix, with ``correct.exclude_flagged``; its ``rt_sd_flag`` is carried onto a raw matrix, so the differential
    table marks those features either way); returns (matrix, note on what was left out or None). Raises
    InputError for a missing file or a flags table without consensus_id and excluded."""
    for path, fix in ((matrix_path, "run the link (or correct) stage"), (flags_path, "run the correct stage")):
        if path is not None and not Path(path).exists():
            raise InputError("table does not exist", file=str(path), fix=fix)
    matrix = pl.read_parquet(matrix_path)
    flags = None
    if flags_path:  # only the flag columns: the corrected matrix also holds every sample
        present = pl.read_parquet_schema(flags_path)
        flags = pl.read_parquet(flags_path, columns=[c for c in ("consensus_id", "excluded", "rt_sd_flag")
                                                     if c in present])
        if "rt_sd_flag" in flags.columns and "rt_sd_flag" not in matrix.columns:  # the raw matrix: carry the mark
            matrix = matrix.join(flags.select(pl.col("consensus_id").cast(matrix.schema["consensus_id"]),
                                              "rt_sd_flag"), on="consensus_id", how="left", maintain_order="left")
    return drop_flagged(matrix, flags, Path(flags_path).name if flags_path else "")
