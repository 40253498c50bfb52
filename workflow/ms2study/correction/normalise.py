"""Run-level normalisation: probabilistic quotient normalisation (PQN; Dieterle et al. 2006, Anal. Chem.
78:4281-4290) of a feature-by-run intensity array, with the runs of one subject aligned with one another first.

``median_normalise`` divides each run by the median over features of its ratio to a reference (the feature-wise
median of the other runs). It removes overall intensity differences between runs (dilution, injection volume, a
global batch offset), not feature-specific drift (``correction.drift``). Arrays have shape (n_features, n_runs),
linear scale, NaN where a feature has no value in a run.
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Sequence

import numpy as np


def median_normalise(values: np.ndarray, runs: np.ndarray,
                     subjects: Sequence[str | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Probabilistic quotient normalisation (Dieterle et al. 2006) of the runs where ``runs`` (bool per run) is True;
    returns (corrected copy, factor per run; 1 for the other runs and for a run sharing no feature with the
    reference). The reference is the feature-wise median over those runs other than the one normalised (all of them
    above ``LOO_MAX_RUNS`` runs), of the features present (> 0) in at least half of them and in 2 or more; each
    run's factor is the median of its value / reference over those features it has (against the others alone, its
    log scaled by (n - 1) / n, the share of the deviation from all runs' centre that the others' median sees). A
    feature measured in one run only would be its own reference, a quotient of exactly 1 that pulls every factor
    towards 1 (a fresh user's two QC injections: every factor 1, the run's true 0.987 unseen; a 2x dilution
    with half the features in one run only gave factors 1.30 / 0.70 instead of 1.33 / 0.67).

    ``subjects`` (one label per run, None for a run of no subject; the sample sheet's ``subject_id``): the runs of
    one subject are first normalised against one another (the same quotient, the subject's other runs as the
    reference), then the subjects against each other and the runs of no subject (each subject as one profile, the
    geometric mean of its aligned runs; every run of a subject takes its profile's quotient, so the runs of a
    subject keep their relation, and a subject counts once however many runs it has). Why: a median quotient against
    other subjects spreads by the differences between subjects, and a few compounds changing with a condition
    move it by a share of that spread (a trial's paired study, 12 of 300 compounds raised after treatment: every
    after-run moved by -0.04 log2, which tests with technical-level noise within subjects read as changes);
    against the subject's own runs the spread, and the pull, is that of the runs of one subject.
    Raises nothing; ``values`` has shape (n_features, n_runs), linear scale, NaN where absent."""
    values = np.asarray(values, dtype=np.float64)
    runs = np.asarray(runs, dtype=bool)
    members = subject_runs(runs, subjects)
    if not members:
        factors = _quotients(values, runs)
        return values / factors[None, :], factors
    within = np.ones(values.shape[1])
    for index in members:
        part = np.zeros(values.shape[1], dtype=bool)
        part[index] = True
        within[index] = _quotients(values, part)[index]
    # the subjects against each other: one profile per subject (the geometric mean of its aligned runs) beside the
    # runs of no subject, so that a subject counts once in the reference however many runs it has
    aligned = values / within[None, :]
    in_subject = np.zeros(values.shape[1], dtype=bool)
    for index in members:
        in_subject[index] = True
    alone = np.flatnonzero(runs & ~in_subject)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        profiles = [np.exp(np.nanmean(np.log(np.where(aligned[:, index] > 0, aligned[:, index], np.nan)), axis=1))
                    for index in members]
    units = np.column_stack([*profiles, aligned[:, alone]])
    between = _quotients(units, np.ones(units.shape[1], dtype=bool))
    factors = np.ones(values.shape[1])
    for k, index in enumerate(members):
        factors[index] = within[index] * between[k]
    factors[alone] = between[len(members):]
    return values / factors[None, :], factors


def subject_runs(runs: np.ndarray, subjects: Sequence[str | None] | None) -> list[np.ndarray]:
    """Indices of the chosen runs of each subject with 2 or more of them (sheet order)."""
    if subjects is None:
        return []
    index: dict[str, list[int]] = {}
    for j, subject in enumerate(subjects):
        if runs[j] and subject:
            index.setdefault(str(subject), []).append(j)
    return [np.array(v) for v in index.values() if len(v) >= 2]


def _quotients(values: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """The probabilistic quotient of each run where ``runs`` is True (see ``median_normalise``); 1 elsewhere."""
    factors = np.ones(values.shape[1])
    chosen = np.flatnonzero(runs)
    if chosen.size == 0:
        return factors
    positive = np.where(values > 0, values, np.nan)
    present = np.isfinite(positive[:, chosen]).sum(axis=1)
    kept = present >= max(2, (chosen.size + 1) // 2)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        # medians of log values: with an even count the middle two are averaged on the log scale (their geometric
        # mean), so three runs at exactly 1, 0.5 and 2x get exactly those factors
        logs = np.log(positive)
        leave_out = chosen.size <= LOO_MAX_RUNS
        shared = None if leave_out else np.where(kept, np.exp(np.nanmedian(logs[:, chosen], axis=1)), np.nan)
        for j in chosen:
            # each run against the median of the OTHER runs: with itself in the reference a run is the median of
            # about 1/n of the features (an exact quotient of 1 at odd n), which pulls its factor to 1 (a trial: a
            # 4 % dilution read 1.000 with 5 and 7 runs; 10 % read 0.955 with 5); above LOO_MAX_RUNS that pull is
            # small and the shared median saves the runs x runs work
            ref = shared if not leave_out else np.where(
                kept, np.exp(np.nanmedian(logs[:, chosen[chosen != j]], axis=1)), np.nan)
            quotient = positive[:, j] / ref
            quotient = quotient[np.isfinite(quotient)]
            if quotient.size:
                factors[j] = float(np.median(quotient))
                if leave_out:
                    # against the others alone, a run's log quotient is n / (n - 1) times its deviation from the
                    # centre of all n runs (exactly so for a mean reference): scaled back, two runs 2x apart get
                    # factors 2x apart, not 4x
                    factors[j] = float(np.exp(np.log(factors[j]) * (chosen.size - 1) / chosen.size))
    return factors


LOO_MAX_RUNS = 50  # median_normalise: a leave-one-out reference up to this many runs (cost: runs x runs)
