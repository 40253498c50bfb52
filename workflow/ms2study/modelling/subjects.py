"""Runs of one subject: technical replicate injections, or several runs of one biological sample.

Labs often inject each sample two or three times. Those runs are not independent samples: treated as such, the
differential tests count one subject's replicates as several observations (pseudo-replication; p-values far too
small) and cross-validation puts replicates of one subject in both the training and the test folds (AUC too high).
The sample sheet's optional column ``subject_id`` names the subject (or biological sample) of each study run; runs
with the same value are one subject, a run with an empty cell is a subject of its own. The study-level analyses
(differential tests, class enrichment and the outcome models) then work on subjects: each subject's value is the
mean over its runs, on the log scale for intensities (a geometric mean of the runs that measured a feature; a
feature none of them measured stays missing) and for the models' feature sets (log intensities, pooled
embeddings, bags of chemistry, binned spectra: the mean of the runs' rows). Averaging technical replicates before
testing is the usual remedy (e.g. Blainey, Krzywinski & Altman, Nat. Methods 11:879, 2014, "Replication").
A paired or repeated-measures design, where the outcome changes between runs of one subject (before / after, one
volunteer under several diets), needs the subject as a blocking factor instead: the differential tests then average
the runs of one subject with one outcome value and add the subject as a factor to the linear model (limma's
``~ subject + group``, which for two runs per subject is the paired t-test; Smyth 2004; permutations of the residuals
of the subject-only model, Freedman & Lane 1983), and the outcome models of a binary such outcome compare each
subject with itself (``modelling.multilevel``); other paired outcomes are skipped with the reason. A covariate that changes within a subject is
refused before any job (``check_subjects``). Pooled QC and blank runs take no part. Per-run outputs (features,
identifications, QC, sample maps) stay per run. Imports polars, numpy and ``ms2study.core`` / ``ms2study.io.samplesheet``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.core.missing import is_missing
from ms2study.io.samplesheet import SUBJECT_COLUMN, sample_roles

_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def _study_rows(sheet: pl.DataFrame) -> np.ndarray:
    """Boolean per row: a study sample (not a pooled QC or a blank)."""
    if "sample_type" not in sheet.columns:
        return np.ones(sheet.height, dtype=bool)
    return (sample_roles(sheet.with_columns(pl.col("sample_id").cast(pl.Utf8)))["sample_type"] == "sample").to_numpy()


def subject_groups(sheet: pl.DataFrame) -> dict[str, list[str]] | None:
    """The study samples of ``sheet`` grouped by subject, ``{subject: [sample_id, ...]}`` in sheet order (a run
    with an empty ``subject_id`` is its own subject, named by its sample_id); None when the sheet has no
    ``subject_id`` column or every subject has one run (nothing to average). Raises InputError when a subject id is
    the sample_id of a run that is not one of its runs (the two would merge)."""
    if SUBJECT_COLUMN not in sheet.columns:
        return None
    groups: dict[str, list[str]] = {}
    ids = sheet["sample_id"].cast(pl.Utf8).to_list()
    subjects = sheet[SUBJECT_COLUMN].cast(pl.Utf8).to_list()
    named = {sid: None if is_missing(subject) else str(subject).strip() for sid, subject in zip(ids, subjects)}
    for sid, study in zip(ids, _study_rows(sheet)):
        if study:
            groups.setdefault(named[sid] or sid, []).append(sid)
    explicit = {v for v in named.values() if v}
    for subject, runs in groups.items():
        if subject in explicit and subject in named and named[subject] != subject:
            own = ", ".join(sid for sid in runs if named[sid] == subject)
            raise InputError(f"subject_id '{subject}' (runs {own}) is also the sample_id of run '{subject}', which "
                             "is not one of its runs", file="samples.tsv",
                             fix="give subjects ids that are not the sample_id of another run")
    if all(len(runs) == 1 for runs in groups.values()):
        return None
    return groups


def check_subjects(sheet: pl.DataFrame, columns: Sequence[str], source: str = "samples.tsv",
                   outcomes: Sequence[str] = ()) -> None:
    """Refuse, before any job, a ``subject_id`` column the study analyses could not use: a subject id that is not
    letters, digits, ``.``, ``_`` or ``-``; one that is another subject's run's sample_id; ``subject_id`` itself
    among ``columns`` (the configured covariates) or ``outcomes``; or a covariate among ``columns`` whose value
    differs between the runs of one subject (the runs of a subject are averaged, or, in a paired design, the subject
    is the block the covariate would vary within). An outcome may differ within a subject: a paired design
    (``paired_outcome``). Raises InputError naming the file, the subject and its runs, and the fix."""
    if SUBJECT_COLUMN not in sheet.columns:
        return
    if SUBJECT_COLUMN in columns or SUBJECT_COLUMN in outcomes:
        raise InputError(f"'{SUBJECT_COLUMN}' says which runs come from one subject; it cannot be an outcome or a "
                         "covariate", file=source, fix=f"remove '{SUBJECT_COLUMN}' from models: outcomes / covariates")
    try:
        groups = subject_groups(sheet) or {}
    except InputError as err:
        raise InputError(err.message, file=source, fix=err.fix) from err
    for subject, runs in groups.items():
        if not _ID.match(subject):
            raise InputError(f"subject_id '{subject}' (runs {', '.join(runs)}) may hold only letters, digits, '.', "
                             "'_' and '-'", file=source, fix="rename the subject in the sample sheet")
    for column in columns:
        if column not in sheet.columns:
            continue  # named by the outcome checks
        differing = _differing(sheet, column, groups)
        if differing:
            subject, listed = differing
            raise InputError(
                f"covariate '{column}' differs between the runs of subject '{subject}' ({listed}); the runs of one "
                "subject are averaged, or in a paired design compared within the subject, so a covariate must be "
                "the subject's", file=source,
                fix=f"give every run of a subject the same '{column}', or remove it from models: covariates")


def _differing(sheet: pl.DataFrame, column: str, groups: Mapping[str, Sequence[str]]) -> tuple[str, str] | None:
    """The first subject whose runs differ in ``column`` (missing counts as a value) and its runs' values as text
    ("S01: a, S02: b"), or None."""
    values = dict(zip(sheet["sample_id"].cast(pl.Utf8).to_list(), sheet[column].to_list()))
    for subject, runs in groups.items():
        shown = [None if is_missing(values[sid]) else str(values[sid]).strip() for sid in runs]
        if len(set(shown)) > 1:
            return subject, ", ".join(f"{sid}: {'(empty)' if v is None else v}" for sid, v in zip(runs, shown))
    return None


def paired_outcome(sheet: pl.DataFrame, column: str, groups: Mapping[str, Sequence[str]] | None) -> bool:
    """Whether outcome ``column`` takes more than one recorded value within a subject (a paired or repeated-measures
    design: before / after, several diets of one volunteer). Runs without a value are left out of the outcome."""
    if not groups or column not in sheet.columns:
        return False
    values = dict(zip(sheet["sample_id"].cast(pl.Utf8).to_list(), sheet[column].to_list()))
    return any(len({str(values[s]).strip() for s in runs if not is_missing(values[s])}) > 1
               for runs in groups.values())


def paired_units(sheet: pl.DataFrame, column: str, groups: Mapping[str, Sequence[str]]
                 ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """For a paired outcome: the runs of one subject with one value of ``column`` as one unit, ``{unit: runs}``
    (the unit named by its first run), and each unit's subject, ``{unit: subject}``. A run without a value is a
    unit of its own (the outcome leaves it out)."""
    values = dict(zip(sheet["sample_id"].cast(pl.Utf8).to_list(), sheet[column].to_list()))
    units: dict[str, list[str]] = {}
    subject_of: dict[str, str] = {}
    for subject, runs in groups.items():
        first: dict[str | None, str] = {}
        for sid in runs:
            value = None if is_missing(values[sid]) else str(values[sid]).strip()
            unit = first.setdefault(value, sid) if value is not None else sid
            units.setdefault(unit, []).append(sid)
            subject_of[unit] = subject
    return units, subject_of


def without_lone_units(sheet: pl.DataFrame, column: str, subject_of: Mapping[str, str]
                       ) -> tuple[pl.DataFrame, dict[str, str]]:
    """``sheet`` (one row per unit, ``paired_units``) without the units of subjects that have a recorded value of
    ``column`` in one unit only, and ``subject_of`` without them. Such a subject adds no within-subject comparison,
    yet its lone unit weighed on the tests: a trial's before/after study lost all 7 hits when one subject's after run
    was missing (its unit was a block of one in the permutations and a level of its own in the variance), and gave
    them back without it. Rows outside ``subject_of`` (QC, blank) are kept."""
    values = dict(zip(sheet["sample_id"].cast(pl.Utf8).to_list(), sheet[column].to_list())) if column in sheet.columns \
        else {}
    complete = complete_subjects(values, subject_of)
    kept = {u: subject for u, subject in subject_of.items() if subject in complete}
    return sheet.filter(~pl.col("sample_id").cast(pl.Utf8).is_in([u for u in subject_of if u not in kept])), kept


def complete_subjects(values: Mapping[str, Any], subject_of: Mapping[str, str]) -> set[str]:
    """The subjects of ``subject_of`` (unit -> subject, ``paired_units``) whose units hold two or more distinct
    recorded outcome values (``values``: unit -> its outcome cell): those with a within-subject comparison."""
    recorded: dict[str, set[str]] = {}
    for unit, subject in subject_of.items():
        if unit in values and not is_missing(values[unit]):
            recorded.setdefault(subject, set()).add(str(values[unit]).strip())
    return {subject for subject, seen in recorded.items() if len(seen) >= 2}


def with_subject_block(sheet: pl.DataFrame, subject_of: Mapping[str, str]) -> pl.DataFrame:
    """``sheet`` (one row per unit) with ``subject_id`` set to each unit's subject as a text level
    ("subject P01"), so that ``outcomes.covariate_matrix`` codes it as a factor even where subject ids read as
    numbers; rows outside ``subject_of`` (QC, blank) get none."""
    ids = sheet["sample_id"].cast(pl.Utf8).to_list()
    return sheet.with_columns(pl.Series(SUBJECT_COLUMN, [f"subject {subject_of[s]}" if s in subject_of else None
                                                         for s in ids], dtype=pl.Utf8))


def subject_of_runs(groups: Mapping[str, Sequence[str]] | None) -> dict[str, str]:
    """Each run's subject, ``{sample_id: subject}``, from ``groups`` (``subject_groups``; None: none)."""
    return {sid: subject for subject, runs in (groups or {}).items() for sid in runs}


def subject_sheet(sheet: pl.DataFrame, groups: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    """``sheet`` with the runs of each subject in ``groups`` (``subject_groups``) replaced by one row: the first
    run's row with ``sample_id`` set to the subject (the outcome and covariate cells agree, ``check_subjects``);
    pooled QC and blank rows kept as they are. Rows in sheet order of each subject's first run."""
    first = {runs[0]: subject for subject, runs in groups.items()}
    later = {sid for runs in groups.values() for sid in runs[1:]}
    ids = sheet["sample_id"].cast(pl.Utf8).to_list()
    keep = [sid not in later for sid in ids]
    renamed = [first.get(sid, sid) for sid in ids]
    return (sheet.with_columns(pl.Series("sample_id", renamed, dtype=pl.Utf8)).filter(pl.Series(keep)))


def average_rows(frame: pl.DataFrame, groups: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    """A samples x values frame (``sample_id`` and numeric columns, e.g. a model feature set) with the rows of each
    subject's runs replaced by their mean (nulls ignored; null where every run is null), ``sample_id`` the subject.
    Rows of runs outside ``groups`` stay as they are; the first-seen order is kept."""
    if "sample_id" not in frame.columns or frame.height == 0:
        return frame
    subject_of = subject_of_runs(groups)
    ids = frame["sample_id"].cast(pl.Utf8).to_list()
    key = pl.Series("sample_id", [subject_of.get(s, s) for s in ids], dtype=pl.Utf8)
    values = [c for c in frame.columns if c != "sample_id"]
    return (frame.with_columns(key).group_by("sample_id", maintain_order=True)
            .agg([pl.col(c).cast(pl.Float64).mean() for c in values]))


def average_columns(matrix: pl.DataFrame, groups: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    """A wide feature matrix (one intensity column per run, null or <= 0 = no value) with each subject's run columns
    replaced by one column named by the subject: the geometric mean of its runs' positive values (null when none
    has one). Other columns are kept; a subject column takes the place of its first run's column."""
    out, done = [], set()
    subject_of = subject_of_runs(groups)
    for column in matrix.columns:
        subject = subject_of.get(column)
        if subject is None:
            out.append(pl.col(column))
            continue
        if subject in done:
            continue
        done.add(subject)
        runs = [r for r in groups[subject] if r in matrix.columns]
        if len(runs) == 1:  # its values unchanged
            out.append(pl.col(runs[0]).alias(subject))
            continue
        logs = [pl.when(pl.col(r).cast(pl.Float64) > 0).then(pl.col(r).cast(pl.Float64).log()) for r in runs]
        out.append(pl.mean_horizontal(logs).exp().alias(subject))
    return matrix.select(out)


def subject_ranges(ranges: Mapping[str, tuple[float, float]], groups: Mapping[str, Sequence[str]]
                   ) -> dict[str, tuple[float, float]]:
    """Per-run RT ranges of runs that measured only part of the study's range (``outcomes.runs_measured``) as
    per-subject ranges: a subject is partial only when every run of it is, with the union of their ranges. Runs
    outside ``groups`` keep theirs."""
    grouped = {sid for runs in groups.values() for sid in runs}
    out = {sid: r for sid, r in ranges.items() if sid not in grouped}
    for subject, runs in groups.items():
        if all(r in ranges for r in runs):
            out[subject] = (min(ranges[r][0] for r in runs), max(ranges[r][1] for r in runs))
    return out


def several_runs(groups: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """The subjects of ``groups`` with more than one run, ``{subject: [runs]}`` (the summaries' ``subjects``)."""
    return {s: list(r) for s, r in (groups or {}).items() if len(r) > 1}


def subjects_note(groups: Mapping[str, Sequence[str]], subject_of: Mapping[str, str] | None = None,
                  without_value: Sequence[str] = ()) -> str:
    """The summary's sentence on the averaging (``groups``: ``subject_groups``), or on the paired design
    (``groups`` and ``subject_of``: ``paired_units``; ``without_value``: its units whose runs have no value of the
    outcome, which the outcome leaves out and the note counts apart: a trial's three-arm sheet with one arm's cells
    empty read "45 study runs ... averaged (45 units)" over a test of 30)."""
    n_runs = sum(len(r) for r in groups.values())
    if subject_of is not None:
        empty = set(without_value)
        n_empty = sum(len(groups[u]) for u in empty if u in groups)
        units = [s for u, s in subject_of.items() if u not in empty]
        single = sorted({s for s in units if units.count(s) == 1})
        lone = (f"; {len(single)} subject(s) have runs of one outcome value only ({', '.join(single[:8])}): they "
                "add nothing to the within-subject comparison and are left out of the tests" if single else "")
        left = f" ({n_empty} of them without a value of the outcome, left out)" if n_empty else ""
        return (f"{n_runs} study runs{left} of {len(set(units))} subjects (sample sheet's {SUBJECT_COLUMN}) "
                "and an outcome that changes within subjects: a paired design. The runs of one subject with one "
                f"outcome value are averaged ({len(units)} units) and the subject is a factor of each test, which "
                f"so compares each subject with itself{lone}")
    several = sum(len(r) > 1 for r in groups.values())
    return (f"{n_runs} study runs of {len(groups)} subjects (sample sheet's {SUBJECT_COLUMN}; {several} with more "
            "than one run): the runs of each subject are averaged and the tests and models count subjects, not runs")


def within_blocks(n: int, blocks: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``n`` samples; with ``blocks`` (per sample its subject, a paired design) each subject's
    samples are shuffled among themselves only (exchangeability blocks: Winkler et al., NeuroImage 92:381, 2014), so
    a relabelling keeps each subject's own comparison, as the paired test does."""
    if blocks is None:
        return rng.permutation(n)
    order = np.arange(n)
    blocks = np.asarray(blocks)
    for block in np.unique(blocks):
        members = np.flatnonzero(blocks == block)
        order[members] = members[rng.permutation(members.size)]
    return order


def check_study_subjects(sheet: pl.DataFrame, config: dict, source: str = "samples.tsv") -> None:
    """``check_subjects`` for a study's configuration: its covariates and outcomes (``models: covariates``,
    ``models: outcomes``), which the differential tests and the models read."""
    models = config.get("models") or {}
    outcomes = [str(o.get("column")) for o in (models.get("outcomes") or []) if isinstance(o, dict)]
    check_subjects(sheet, [str(c) for c in models.get("covariates") or []], source, outcomes)


def varies_within(samples: pl.DataFrame, ids: list[str], groups: np.ndarray, column: str) -> bool:
    """Whether sheet ``column`` takes more than one value (empty cells ignored) among the runs of any subject
    (``groups``, aligned with ``ids``)."""
    if column not in samples.columns:
        return False
    value = dict(zip(samples["sample_id"].cast(pl.Utf8).to_list(), samples[column].cast(pl.Utf8).to_list()))
    seen: dict[str, set] = {}
    for sample, group in zip(ids, groups):
        cell = value.get(sample)
        if cell is not None and cell.strip():
            seen.setdefault(str(group), set()).add(cell.strip())
    return any(len(v) > 1 for v in seen.values())


def lone_subject_warnings(sheet: pl.DataFrame, columns: Sequence[str], name: str) -> list[str]:
    """Before a run: one warning per outcome ``columns`` entry that changes within subjects (``paired_outcome``)
    naming the subjects whose study runs hold one of its values only, which its paired tests and models leave out
    (``without_lone_units``; trial BJ: a subject missing its "after" run was named only in the notes after a
    20-minute run). ``name``: the sheet's file name. [] without subjects or such outcomes."""
    groups = subject_groups(sheet)
    subject_of, warnings = subject_of_runs(groups), []
    for column in columns:
        if not paired_outcome(sheet, column, groups):
            continue
        value = dict(zip(sheet["sample_id"].cast(pl.Utf8).to_list(), sheet[column].to_list()))
        lone = sorted(set(subject_of.values()) - complete_subjects(value, subject_of))
        if lone:
            warnings.append(f"{name}: outcome '{column}' changes within subjects (a paired design), but "
                            f"{len(lone)} subject(s) have runs of one of its values only ({', '.join(lone[:10])}"
                            f"{' ...' if len(lone) > 10 else ''}): they will be left out of its tests and models "
                            "(add the missing run, or leave it so)")
    return warnings
