"""Features detected in one batch only (``batch_only`` in the corrected matrix).

A contaminant of one batch's solvent or extraction kit, a column changed between batches, a compound a batch's
method resolves and another does not, or a weak ion in a batch measured with more sensitivity than the others shows
as a feature that feature detection found in the runs of one batch and in
none of the others. Gap filling then gives it low values elsewhere and the batch correction centres each batch, so
in the tests and models it looks like any other feature; if the outcome groups are not spread evenly over the
batches, its "difference" is the batch's. Such a feature is marked, never removed (a trial's 4-batch cohort had such
features and the report said nothing of them).

The mark is a test, so that it says something beyond chance: a feature detected in ``k`` of the ``N`` counted runs
(study samples and pooled QCs; blanks take no part, gap-filled values do not count) all of which lie in one batch is
marked when the chance that ``k`` detections spread at random over the runs would all fall in a single batch,

    p = sum over batches b of C(n_b, k) / C(N, k)      (hypergeometric; n_b: the batch's counted runs)

is below ``BATCH_ONLY_ALPHA``. In a study of two batches of 12 runs a feature seen in 2 runs of one batch is not
marked (p = 0.48), nor one seen in 6 (p = 0.014); one seen in 7 runs of one batch and none of the other is (p =
0.0046). In three batches of 4 runs, all 4 runs of one batch and none of the others are needed (p = 0.006).
Under the null (detection independent of batch) at most ``BATCH_ONLY_ALPHA`` of the features are marked, measured
in tests/test_presence.py; usually far fewer, since few detection counts k can reach the threshold at all.
:func:`expected_by_chance` gives the number a study's own features would get by chance: a feature detected in k runs
has its k detections in one batch with probability p(k), so the expected count is the sum of p(k) over the features
whose p(k) lies below the threshold (trial AN: a reader took "less than 1 %" for the expected share). A study of
one batch, or whose other batches have no counted runs, marks nothing.
Imports numpy and scipy (``scipy.stats.hypergeom``) only.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import hypergeom

BATCH_ONLY_ALPHA = 0.01  # the chance of a mark for a feature whose detections do not depend on the batch


def batch_only(detected: np.ndarray, counted: np.ndarray, batches: list[str],
               alpha: float = BATCH_ONLY_ALPHA) -> tuple[list[str | None], np.ndarray]:
    """The batch each feature was detected in alone, where that is unlikely by chance (see the module docstring).

    ``detected``: shape (features, runs), the values before gap filling (finite = detected); ``counted``: shape
    (runs,) bool, the runs that count (study samples and pooled QCs); ``batches``: each run's batch (str; length
    runs). Returns (one batch name or None per feature, the chance ``p`` of each feature's pattern, NaN where its
    detections are not all in one batch or it is detected in no counted run). Raises ValueError when the shapes
    disagree."""
    order, per_batch, chance = _detections_by_batch(detected, counted, batches)
    p = np.full(per_batch.shape[0], np.nan)
    names: list[str | None] = [None] * per_batch.shape[0]
    if len(order) < 2 or not per_batch.shape[0]:
        return names, p
    alone = (per_batch.sum(axis=1) > 0) & ((per_batch > 0).sum(axis=1) == 1)
    p[alone] = chance[alone]
    which = np.argmax(per_batch, axis=1)
    for i in np.flatnonzero(alone & (p < alpha)):
        names[i] = order[which[i]]
    return names, p


def expected_by_chance(detected: np.ndarray, counted: np.ndarray, batches: list[str],
                       alpha: float = BATCH_ONLY_ALPHA) -> float:
    """The number of features :func:`batch_only` would mark if detection did not depend on the batch, given each
    feature's number of detections: the sum of p(k) over the features whose p(k) < ``alpha`` (same arguments as
    :func:`batch_only`; 0.0 for a study of one batch). Raises ValueError when the shapes disagree."""
    order, _, chance = _detections_by_batch(detected, counted, batches)
    if len(order) < 2:
        return 0.0
    return float(chance[chance < alpha].sum())


def _detections_by_batch(detected: np.ndarray, counted: np.ndarray,
                         batches: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(batch names in order, detections per feature and batch (features, batches), p(k) of each feature: the
    chance that its k detections all fall in one batch, NaN where k = 0)."""
    values = np.asarray(detected, dtype=np.float64)
    counted = np.asarray(counted, dtype=bool)
    if values.ndim != 2 or values.shape[1] != counted.size or counted.size != len(batches):
        raise ValueError(f"detected {values.shape}, counted {counted.shape} and {len(batches)} batches disagree")
    labels = np.array([str(b) for b in batches], dtype=object)[counted]
    order = list(dict.fromkeys(labels.tolist()))
    hits = np.isfinite(values[:, counted])
    sizes = np.array([(labels == b).sum() for b in order], dtype=np.float64)
    per_batch = (np.stack([hits[:, labels == b].sum(axis=1) for b in order], axis=1) if order
                 else np.zeros((values.shape[0], 0), dtype=np.int64))
    k = per_batch.sum(axis=1)
    chance = np.full(values.shape[0], np.nan)
    some = k > 0
    if some.any() and len(order) >= 2:  # P(all k draws from batch b) = hypergeom(N, n_b, k).pmf(k), over the batches
        kk = k[some][:, None]
        chance[some] = hypergeom.pmf(kk, sizes.sum(), sizes[None, :], kk).sum(axis=1)
    return order, per_batch, chance
