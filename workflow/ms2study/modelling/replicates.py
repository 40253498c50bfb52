"""Study runs that look like replicate injections of one sample while the sheet counts them as separate samples.

Runs of one subject counted as independent samples make the tests and models overstate the evidence
(``modelling.subjects``: on a null study of 12 subjects x 3 injections, 41 false features at q < 0.05 and an AUC
of 1.0). The sheet's ``subject_id`` fixes that, but only when the scientist gives it. This check looks for runs
that are far closer to one or a few other runs than to any other: for each study run the Euclidean distances to the
other runs in the log feature matrix (the features every study run detected, each run's median removed, batches
centred: as the outlier rule, ``modelling.qc.group_outliers``), sorted; the run and its k nearest runs (k = 1 to
``MAX_PARTNERS``) are a candidate group when the k-th nearest distance is below ``RATIO`` times the (k+1)-th, and
a group is kept when every run of it names the same group. Runs the sheet already gives one subject are left out.
The result is a caution, never an action: a pair of very similar runs may also be two samples of a tight class.

Measured by ``benchmarks/replicate_check.py`` (``measured/replicate_check.json``: 600 log-normal features,
biological log-sd 0.2 and 0.4, 6-48 runs, 100 studies per setting; replicate pairs and triplicates with technical
log-sd 0.1 and 0.15): with two groups differing in 30 features 3x (6-48 runs) or two clusters 300 features 10x apart
(12-48 runs) no clean study was flagged, and replicates with technical sd 0.1 were found in every study (sd 0.15
against biological 0.2, where replicates differ almost as much as subjects: 4-74 %). Flagged by design of the rule:
a class or cluster of 2-4 samples far from all others, which distances cannot tell from a replicate group (two
clusters of 3 in 6 runs; three classes 150 features 5x apart in 6 or 12 runs: 10-100 % of clean studies; six such
classes in 12 or 24 runs at biological sd 0.2). Real
tables: ST000291 (45 urine samples, 15 volunteers each under three diets) none, sacurine (183) none. Imports numpy,
polars and ``ms2study.modelling.qc`` / ``ms2study.modelling.subjects``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ms2study.modelling.qc import MIN_COMPLETE_FEATURES, complete_log_matrix, run_distances
from ms2study.modelling.subjects import SUBJECT_COLUMN, subject_groups, subject_of_runs

RATIO = 0.6          # the k-th nearest distance below this share of the (k+1)-th: a group set apart
MAX_PARTNERS = 3     # replicate groups of up to 4 runs
MIN_RUNS = 6         # fewer study runs: not checked (the next nearest run is no reference)
REPLICATE_MARK = "replicate injections of one sample?"  # in the run note; the report's caution looks for it


def replicate_groups(X: np.ndarray, ids: list[str], same_subject: dict[str, str] | None = None
                     ) -> list[tuple[list[str], float, float]]:
    """Groups of runs set apart from all others by their distances (module docstring). ``X``: runs x features,
    log intensities, no NaN (rows in ``ids`` order); ``same_subject``: run -> subject for runs the sheet already
    groups (pairs within one subject are not reported). Returns [(runs of the group in ``ids`` order, the largest
    distance within it, the smallest distance from one of them to a run outside it)], empty with fewer than
    ``MIN_RUNS`` runs or no feature."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if n < MIN_RUNS or X.ndim != 2 or X.shape[1] == 0:
        return []
    distance = run_distances(X)
    order = np.argsort(distance, axis=1)
    nearest = np.take_along_axis(distance, order, axis=1)
    partners = [set() for _ in range(n)]
    for i in range(n):
        for k in range(1, min(MAX_PARTNERS, n - 3) + 1):
            if nearest[i, k - 1] < RATIO * nearest[i, k]:
                partners[i] = {int(j) for j in order[i, :k]}
                break
    subject = same_subject or {}
    groups: list[set[int]] = []
    for i in range(n):  # a group every member of which sees the same runs set apart: {i} and its partners
        group = {i} | partners[i]
        if partners[i] and group not in groups and all({m} | partners[m] == group for m in group):
            marked = {subject.get(ids[m]) for m in group}
            if len(marked) > 1 or None in marked:  # not one subject of the sheet already
                groups.append(group)
    out = []
    for g in sorted(groups, key=min):
        members = sorted(g)
        inside = max(distance[a, b] for a in members for b in members if a != b)
        outside = min(distance[a, b] for a in members for b in range(n) if b not in g)
        out.append(([ids[m] for m in members], float(inside), float(outside)))
    return out


def with_replicate_notes(table: pl.DataFrame, samples: pl.DataFrame, feature_matrix: pl.DataFrame | None
                         ) -> pl.DataFrame:
    """The QC ``table`` (``modelling.qc.qc_table``) with a ``run_note`` on each study run of a replicate group
    (``replicate_groups`` on the study runs' log feature matrix, as the outlier rule builds it). ``samples``: the
    sheet (its ``subject_id`` says which runs are already one subject). When fewer than ``MIN_COMPLETE_FEATURES``
    features are detected in every study run, the runs detecting the fewest are left out one by one (while more
    than ``MIN_RUNS`` remain) and their note says so. Unchanged without a matrix."""
    study = table.filter(pl.col("sample_type") == "sample")
    ids = study["sample_id"].to_list()
    if feature_matrix is None or len(ids) < MIN_RUNS:
        return table
    batches = study["batch"].to_list()
    X = complete_log_matrix(feature_matrix, ids, batches)
    left_out: list[str] = []
    # runs by how many features they detect (intensity > 0), fewest first: the order in which they are left out
    detected = {s: int(feature_matrix[s].cast(pl.Float64).fill_nan(None).fill_null(0.0).gt(0).sum()) for s in ids}
    while X is None and len(ids) > MIN_RUNS:
        # a run that shares few features with the others (an MS1-only or another instrument's run) would leave no
        # feature detected in every run and turn the check off for all (a trial: two byte-identical pairs unsaid)
        drop = min(range(len(ids)), key=lambda k: detected[ids[k]])
        left_out.append(ids[drop])
        ids, batches = ids[:drop] + ids[drop + 1:], batches[:drop] + batches[drop + 1:]
        X = complete_log_matrix(feature_matrix, ids, batches)
    if X is None:
        return table
    same = {}
    if SUBJECT_COLUMN in samples.columns:
        same = subject_of_runs(subject_groups(samples))
    notes = {}
    for runs, inside, outside in replicate_groups(X, ids, same):
        for run in runs:
            others = ", ".join(r for r in runs if r != run)
            notes[run] = (f"much closer to {others} than to any other run (distance {inside:.2f}; the nearest "
                          f"other run {outside:.2f}): {REPLICATE_MARK} If so, give them one "
                          f"{SUBJECT_COLUMN} in the sample sheet; counted as separate samples they overstate the "
                          "evidence of the tests and models")
    for run in left_out:
        notes[run] = (f"left out of the replicate check: it shares too few features with the other runs (with it, "
                      f"fewer than {MIN_COMPLETE_FEATURES} are detected in every run)")
    if not notes:
        return table
    old = table["run_note"].to_list()
    new = [(f"{o}; {notes[s]}" if o else notes[s]) if s in notes else o
           for s, o in zip(table["sample_id"].to_list(), old)]
    return table.with_columns(pl.Series("run_note", new, dtype=pl.Utf8))
