"""Outcome models of a paired design: each subject compared with itself (multilevel analysis).

In a paired or repeated-measures study (before / after, runs of one subject under two conditions; the sample
sheet's ``subject_id`` with a binary outcome that changes within subjects) the subjects differ far more from one
another than a subject's runs differ with the outcome, and a model of the runs as independent samples has to learn
the outcome through that between-subject variation. The multilevel approach (Westerhuis et al. 2010, "Multivariate
paired data analysis: multilevel PLSDA versus OPLSDA", Metabolomics 6:119) splits the variation into a
between-subject and a within-subject part and models the within-subject part alone: each subject's runs of one
outcome value are averaged into a unit, and every feature of a unit is taken relative to its subject's mean over
its units. For a pair that leaves +d/2 and -d/2, d the subject's after-minus-before difference.

The cross-validation then holds out whole subjects (``crossval.RepeatedGroupKFold``), the label permutations swap
labels within subjects only (``subjects.within_blocks``), and the bootstrap resamples subjects
(``metrics.bootstrap_weights`` with groups), so no subject's runs are on both sides of a split and the null keeps
each subject's pairing. Only subjects with runs of both outcome values are modelled (a subject with one value has
no within-subject difference); covariates are left out (a subject's covariates are the same in all its runs, so
centring removes them). Missing values: a feature missing in either unit of a subject is missing in both centred
rows and filled with the training mean (0) inside the folds; features with both values in fewer than half of the
subjects are dropped before (a rule that reads no labels). Imports polars, numpy and ``modelling.subjects``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from ms2study.core.missing import is_missing
from ms2study.modelling.subjects import SUBJECT_COLUMN, average_rows, complete_subjects, paired_units, subject_sheet

METHOD = ("multilevel (Westerhuis et al. 2010): each subject's runs of one outcome value averaged, features taken "
          "relative to the subject's mean, cross-validation by subject, label permutations within subjects, "
          "bootstrap over subjects")


def paired_model_data(samples: pl.DataFrame, sets: Mapping[str, pl.DataFrame], column: str,
                      groups: Mapping[str, Sequence[str]]
                      ) -> tuple[pl.DataFrame, dict[str, pl.DataFrame], dict[str, str], str]:
    """For a binary outcome ``column`` that changes within subjects (``subjects.paired_outcome``): the sheet of the
    modelled units (one row per subject and outcome value, named by its first run; subjects with both values only),
    the feature ``sets`` (samples x values, per run, ``sample_id`` first) averaged per unit and centred within each
    subject, each unit's subject ``{unit: subject}`` and a note for the summary (how many subjects, units and runs,
    those left out, the method). ``groups``: ``subjects.subject_groups`` of ``samples``."""
    units, subject_of = paired_units(samples, column, groups)
    values = dict(zip(samples["sample_id"].cast(pl.Utf8).to_list(), samples[column].to_list()))
    complete = complete_subjects(values, subject_of)
    kept = {u: runs for u, runs in units.items() if subject_of[u] in complete and not is_missing(values.get(u))}
    blocks = {u: subject_of[u] for u in kept}
    sheet = subject_sheet(samples, kept)
    sheet = sheet.filter(pl.col("sample_id").is_in(list(kept)) | ~pl.col("sample_id").is_in(
        [s for runs in units.values() for s in runs]))
    centred = {name: _centred(average_rows(frame, kept).filter(pl.col("sample_id").is_in(list(kept))), blocks)
               for name, frame in sets.items() if "sample_id" in frame.columns}
    left = sorted(set(subject_of.values()) - complete)
    n_runs = sum(len(r) for r in kept.values())
    note = (f"a paired design (sample sheet's {SUBJECT_COLUMN}): {len(complete)} subjects with runs of both values of "
            f"{column} ({len(kept)} units of {n_runs} runs) modelled within subjects, {METHOD}"
            + (f"; {len(left)} subject(s) with runs of one value only left out ({', '.join(left[:8])})" if left else ""))
    return sheet, centred, blocks, note


def _centred(frame: pl.DataFrame, blocks: Mapping[str, str]) -> pl.DataFrame:
    """``frame`` (one row per unit) with every value minus its subject's mean over the subject's units; a value whose
    subject has it missing in any unit is missing in all of them; columns with such values in half the subjects or
    more are dropped."""
    if frame.height == 0:
        return frame
    ids = frame["sample_id"].cast(pl.Utf8).to_list()
    subject = np.asarray([blocks[s] for s in ids])
    columns = [c for c in frame.columns if c != "sample_id"]
    X = frame.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy().astype(np.float64)
    out = np.full_like(X, np.nan)
    subjects = np.unique(subject)
    complete = np.zeros((subjects.size, X.shape[1]), dtype=bool)
    for k, s in enumerate(subjects):
        rows = subject == s
        block = X[rows]
        ok = np.isfinite(block).all(axis=0)
        complete[k] = ok
        out[np.ix_(rows, ok)] = block[:, ok] - block[:, ok].mean(axis=0)
    keep = complete.mean(axis=0) > 0.5
    data = {c: pl.Series(c, out[:, j], dtype=pl.Float64).fill_nan(None) for j, c in enumerate(columns) if keep[j]}
    return pl.DataFrame({"sample_id": pl.Series(ids, dtype=pl.Utf8), **data})
