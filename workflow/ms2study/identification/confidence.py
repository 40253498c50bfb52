"""Identification confidence: an empirical null of wrong candidates measured on the library, q-values, Schymanski
levels.

Why not target-decoy. Random-fragment decoys almost never match a query within 0.02 Da, so every real library
spectrum, right or wrong, beats its decoy and the competition controls nothing (measured: about 11 % false hits
among hits accepted at "1 % FDR" on held-out MassBank queries). What a false identification looks like is a real
spectrum of ANOTHER compound that happens to score high. So the null is measured on the library itself
(``ms2study.stages.calibrate``): library spectra are searched as queries against the library with every spectrum of their
own structure (first InChIKey block) removed, and the ranking score of each wrong candidate structure (its best
spectrum) is kept. Two nulls: wrong-FORMULA candidates (a hit of that kind is wrong at every confidence level;
taken from a wide precursor window of +-``WIDE_WINDOW_DA`` so that even a sparse library gives thousands of them,
scored as if they sat inside the precursor window) and wrong-STRUCTURE candidates inside the precursor window
(isomers included: a hit of that kind is wrong at level 2). Half of the searches use degraded copies of the
spectra (low-concentration measurements), so noisy sample spectra are covered.

p-values. A query's rank-1 score ``s`` among ``n`` candidate structures has
``p = 1 - (1 - G(s))^n``, where ``G(s)`` is the share of wrong candidates scoring at least ``s`` (Sidak: the best of
``n`` wrong candidates; conservative when their scores are positively associated). Every candidate counts as
possibly wrong, so the mere absence of other candidates at a mass is never evidence: only spectral agreement
is. Where fewer than 10 null scores reach ``s``, ``G`` is extrapolated with an exponential fitted to the
exceedances over a high threshold on the logit scale (peaks over threshold, as for permutation p-values in
Knijnenburg et al., Bioinformatics 25:i161, 2009), when the null has at least 20 graded scores (> TAIL_FLOOR);
otherwise ``G`` stays at least ``1/(N+1)``. q-values follow from Benjamini & Hochberg (1995) over the rank-1 hits
of one search (one sample, or one query file), times Storey's estimate of the share of wrong hits among them
(``adaptive_q_values``).

Assumptions, stated because the q-values rest on them: the library's compounds stand in for the unknowns behind
the queries (a library rich in one chemical class gives a null fit for that class), wrong candidates from a
+-WIDE_WINDOW_DA window score like wrong candidates within the precursor window, and sample spectra are no
worse than the degraded library spectra. ``benchmarks/fdr_calibration.py`` measures whether the q-values hold on
structure-disjoint held-out queries with known unknowns.

Identification levels (Schymanski et al., Environ. Sci. Technol. 48:2097, 2014). An accepted hit is level 2 (probable
structure by library spectrum match) when its cosine is at least ``LOW_COSINE`` and its structure q-value passes the
same FDR: the two-group model of
``ms2study.identification.structure_model``, learned on the library's own searches (right structure present
against removed), gives each rank-1 hit a posterior that its STRUCTURE is right, with the share of right hits
estimated from the search's hits themselves. Calibrations without that model (too few training hits, or files of
version 2) use the older, stricter rule: the structure-null q-value (the wrong-structure null of the hit's chemical
superclass where the library has enough of them) passes the FDR and no other structure of the same formula scores
within ``isomer_margin`` of it. The margin is learned on the library (leave-one-spectrum-out searches: the
smallest margin above which a wrong isomer wins in at most ``ISOMER_ERROR_TARGET`` of 50 or more searches; none
with fewer), never on the queries being scored. Otherwise a hit is level 3 (tentative candidate: formula and class
supported, isomers plausible), and ``isomer_inchikeys`` lists every isomer candidate that could be identified.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.atomic import write_text
from ms2study.core.errors import InputError
from ms2study.core.paths import CALIBRATION_FORMAT_VERSION
from ms2study.identification.structure_model import StructureModel

log = logging.getLogger(__name__)

FORMAT_NAME = "ms2study-identification-calibration"
FORMAT_VERSION = CALIBRATION_FORMAT_VERSION  # 3: the level-2 structure model; 4: no precursor-error evidence;
# 5: calibration queries with a measured precursor error (ms2study.core.measurement); 6: the level-2 model reads the
# hit structure's other spectra (structure_model.FEATURES); 7: its training hits share 2 or more fragment peaks
READABLE_VERSIONS = (7,)  # 2 and 3 scored the precursor error; 4 searched exact precursors (too kind to right hits);
# 5's level-2 model has fewer features; 6's learned from 1-peak hits too

WIDE_WINDOW_DA = 5.0       # wrong-formula null candidates: library structures within this distance of the query
MIN_EXCEEDANCES = 10       # fewer null scores >= s: the tail is extrapolated
TAIL_FRACTION = 0.01       # share of the null's scores (at least MIN_EXCEEDANCES) fitting the exponential tail
TAIL_FLOOR = 0.05          # null scores at or below this (no real spectral agreement) never shape the tail
ISOMER_ERROR_TARGET = 0.02 # wrong-isomer rate allowed among level-2 self-search hits when learning the margin
NO_MARGIN = float(np.finfo(np.float64).max)  # no margin learned: a hit with an identifiable isomer is level 3
MIN_CLASS_NULL = 300       # wrong-structure candidates needed for a chemical class's own structure null
MIN_STRUCTURE_NULL = 20    # wrong-structure candidates below which no hit can be singled out (Schymanski level 2)
LOW_COSINE = 0.3           # accepted hits below this cosine carry an evidence note (the report says why they passed)
STORED_TOP = 5000          # null scores stored exactly (the upper tail); the rest as quantiles
STORED_QUANTILES = 1000
ION_RT_GAP_S = 30.0        # repeated triggers of one unmapped ion further apart in RT (s): two elutions
_EPS = 1e-6


def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(np.asarray(s, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(s) - np.log1p(-s)


# How to search without q-values, in the pipeline's config and in `ms2study score` (a trial: the score command's
# error named only the config file's setting)
CONFIDENCE_NONE = ("set annotate: {confidence: none} in config.yaml, or --params '{\"confidence\": \"none\"}' with "
                   "ms2study score (best matches without q-values)")


@dataclass
class NullDistribution:
    """Scores of wrong candidates: ``n`` in all, the largest kept exactly (``top``, ascending), the rest as
    ``quantiles`` (ascending, at equally spaced probabilities of the remaining ``n - top.size``)."""

    n: int
    top: np.ndarray
    quantiles: np.ndarray

    @classmethod
    def from_scores(cls, scores: np.ndarray) -> NullDistribution:
        """Summarise wrong-candidate scores (NaN and -inf dropped)."""
        v = np.sort(np.asarray(scores, dtype=np.float64))
        v = v[np.isfinite(v)]
        top = v[-STORED_TOP:] if v.size > STORED_TOP else v
        rest = v[: v.size - top.size]
        quantiles = (np.quantile(rest, np.linspace(0, 1, STORED_QUANTILES)) if rest.size > STORED_QUANTILES
                     else rest)
        return cls(int(v.size), top, np.asarray(quantiles, dtype=np.float64))

    def survival(self, s: np.ndarray) -> np.ndarray:
        """G(s) = P(wrong candidate score >= s), with the exponential tail beyond the data (module docstring)."""
        s = np.asarray(s, dtype=np.float64)
        n = max(self.n, 0)
        rest_n = n - self.top.size
        count = (self.top.size - np.searchsorted(self.top, s, side="left")).astype(np.float64)
        below = s < (self.top[0] if self.top.size else np.inf)
        if below.any() and rest_n > 0 and self.quantiles.size:
            frac = 1.0 - np.interp(s[below], self.quantiles, np.linspace(0, 1, self.quantiles.size),
                                   left=0.0, right=1.0)
            count[below] += frac * rest_n
        g = (count + 1.0) / (n + 1.0)
        graded = self.top[self.top > TAIL_FLOOR]
        thin = count < MIN_EXCEEDANCES
        if thin.any() and graded.size >= 2 * MIN_EXCEEDANCES:
            k = min(max(MIN_EXCEEDANCES, int(round(TAIL_FRACTION * n))), graded.size - 1)
            top = _logit(graded[-k:])
            u = _logit(graded[-k - 1])
            beta = max(float(np.mean(top - u)), 1e-3)
            tail = (k / (n + 1.0)) * np.exp(-np.maximum(_logit(s[thin]) - u, 0.0) / beta)
            g[thin] = np.minimum(g[thin], tail)
        return np.clip(g, 1e-300, 1.0)

    def p_values(self, s: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
        """p of the best of ``n_candidates`` wrong candidates reaching ``s``: ``1 - (1 - G(s))^n`` (Sidak)."""
        g = self.survival(s)
        n = np.maximum(np.asarray(n_candidates, dtype=np.float64), 1.0)
        return np.clip(-np.expm1(n * np.log1p(-np.minimum(g, 1.0 - 1e-16))), 0.0, 1.0)

    def smallest_p(self) -> float:
        """The smallest p-value a hit can get against this null: a score above every wrong candidate measured, one
        candidate structure. Without a tail fit (too few high wrong scores) it is 1 / (wrong candidates + 1)."""
        best = max(1.0 - 1e-12, float(self.top[-1]) + 1e-9 if self.top.size else 0.0)
        return float(self.p_values(np.array([best]), np.array([1]))[0])

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "top": [round(float(x), 7) for x in self.top],
                "quantiles": [round(float(x), 7) for x in self.quantiles]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NullDistribution:
        return cls(int(data["n"]), np.asarray(data["top"], dtype=np.float64),
                   np.asarray(data["quantiles"], dtype=np.float64))


@dataclass
class Calibration:
    """A library's identification nulls and isomer margin, for one scoring configuration.

    ``formula`` / ``structure``: wrong-formula and wrong-structure candidate scores (module docstring);
    ``isomer_margin`` in score units; ``scoring`` describes the score the nulls were measured with (``rank_by``,
    the combined-score plan and the encoder ``model_id``): a calibration only applies to searches that score the
    same way.
    """

    scoring: dict[str, Any]
    formula: NullDistribution
    structure: NullDistribution
    isomer_margin: float
    stats: dict[str, Any] = field(default_factory=dict)
    structure_by_class: dict[str, NullDistribution] = field(default_factory=dict)
    structure_model: StructureModel | None = None
    isomer_separability: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_null(cls, formula_scores: np.ndarray, structure_scores: np.ndarray, isomer_margin: float,
                  scoring: dict[str, Any], stats: dict[str, Any] | None = None,
                  structure_classes: np.ndarray | None = None, structure_model: StructureModel | None = None,
                  isomer_separability: dict[str, float] | None = None) -> Calibration:
        """Build from wrong-candidate scores (one per query and wrong candidate structure).

        ``structure_classes`` (aligned with ``structure_scores``): the chemical class of each wrong candidate
        (``superclass``); classes with at least MIN_CLASS_NULL candidates get a structure null of their own, since
        how well spectra separate isomers differs by class (lipid species hardly, many drugs well).
        ``structure_model`` and ``isomer_separability`` (first InChIKey block -> best score of another structure of
        its formula against it): Schymanski level 2 (``ms2study.identification.structure_model``); without a model level
        2 falls back to the structure null and the isomer margin.

        Raises InputError when there are no wrong-formula candidates at all (the library is too small or has
        no InChIKeys), because q-values would then be asserted, not measured.
        """
        formula = NullDistribution.from_scores(formula_scores)
        if formula.n == 0:
            raise InputError("no leave-structure-out search found a wrong candidate: the library cannot calibrate "
                             "identification confidence",
                             fix=f"use a library with InChIKeys and more than a handful of structures, or "
                                 f"{CONFIDENCE_NONE}")
        structure = NullDistribution.from_scores(structure_scores)
        by_class = {}
        if structure_classes is not None:
            classes = np.asarray(structure_classes, dtype=object)
            for c in sorted({x for x in classes.tolist() if x}):
                sel = classes == c
                if sel.sum() >= MIN_CLASS_NULL:
                    by_class[str(c)] = NullDistribution.from_scores(np.asarray(structure_scores)[sel])
        return cls(scoring, formula, structure, float(isomer_margin), stats or {}, by_class, structure_model,
                   dict(isomer_separability or {}))

    def smallest_p(self) -> float:
        """The smallest p-value any hit can get: a score above every wrong candidate measured, one candidate structure
        (``p_formula``). Without a tail fit (too few high wrong scores) it is 1 / (wrong candidates + 1): a library
        too small to measure how often a wrong compound scores that high bounds every p-value, and with it the
        q-values, from below (a fresh user's 21-pesticide library: 34 wrong candidates, no p below 0.029, so no
        hit, cosine 0.97-1.00, could reach q <= 0.01)."""
        return self.formula.smallest_p()

    def p_formula(self, scores: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
        """p-value of rank-1 scores against the wrong-formula null, given candidate structure counts."""
        return self.formula.p_values(scores, n_candidates)

    def p_structure(self, scores: np.ndarray, n_candidates: np.ndarray,
                    classes: np.ndarray | None = None) -> np.ndarray:
        """p-value of rank-1 scores against the wrong-structure null (isomers included), never below the
        wrong-formula p-value; ``classes`` (the hits' ``superclass``) selects a class's own null where one was
        measured, else the pooled one. NaN everywhere when the library gave fewer than MIN_STRUCTURE_NULL
        wrong-structure candidates (a hit is then at most Schymanski level 3)."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.structure.n < MIN_STRUCTURE_NULL:
            # Too few wrong structures of the same formula were ever seen to say how often an isomer wins: no
            # structure-level evidence, so no hit is singled out (level 3 at most), never the formula null instead.
            return np.full(scores.shape, np.nan)
        p_f = self.formula.p_values(scores, n_candidates)
        p = self.structure.p_values(scores, n_candidates)
        if classes is not None and self.structure_by_class:
            classes = np.asarray(classes, dtype=object)
            n = np.asarray(n_candidates)
            for c, dist in self.structure_by_class.items():
                sel = classes == c
                if sel.any():
                    p[sel] = dist.p_values(scores[sel], n[sel])
        return np.maximum(p, p_f)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "scoring": self.scoring,
                "isomer_margin": self.isomer_margin, "stats": self.stats,
                "formula_null": self.formula.to_json(), "structure_null": self.structure.to_json(),
                "structure_null_by_class": {c: d.to_json() for c, d in self.structure_by_class.items()},
                "structure_model": self.structure_model.to_json() if self.structure_model is not None else None,
                "isomer_separability": {k: round(float(v), 7) for k, v in self.isomer_separability.items()}}

    def save(self, path: str | Path) -> Path:
        """Write as JSON (atomically); returns the path."""
        write_text(json.dumps(self.to_json()), path)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration written by ``save``; InputError when it is not one or of a version not in
        READABLE_VERSIONS (an older file was measured with another score: rebuild it)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read the identification calibration: {err}", file=str(path),
                             fix="rebuild it: delete the file and rerun the pipeline") from err
        if data.get("format") != FORMAT_NAME or data.get("version") not in READABLE_VERSIONS:
            raise InputError("not an identification calibration of this version", file=str(path),
                             fix="delete the file and rerun the pipeline to rebuild it")
        model = data.get("structure_model")
        return cls(data["scoring"], NullDistribution.from_json(data["formula_null"]),
                   NullDistribution.from_json(data["structure_null"]), float(data["isomer_margin"]),
                   data.get("stats", {}), {c: NullDistribution.from_json(d)
                                           for c, d in data.get("structure_null_by_class", {}).items()},
                   StructureModel.from_json(model) if model else None,
                   {k: float(v) for k, v in data.get("isomer_separability", {}).items()})


def bh_q_values(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg (1995) adjusted p-values (q-values) of a 1-D array; NaN stays NaN."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv, kind="stable")
    ranked = pv[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(q, 1.0)
    out[ok] = res
    return out


PI0_LAMBDA = 0.5  # Storey's tuning point: p-values above it are counted as coming from wrong hits


def storey_pi0(p: np.ndarray, lam: float = PI0_LAMBDA) -> float:
    """Estimated share of true null hypotheses among the finite p-values of ``p`` (shape (m,); NaN ignored):
    ``pi0 = (#{p > lam} + 1) / (m (1 - lam))``, at most 1; 1 when there is no p-value.

    Storey, Taylor & Siegmund (J. R. Stat. Soc. B 66:187, 2004), the estimator with the added 1 under which the
    adaptive step-up procedure controls the FDR in finite samples for independent p-values. Hits that cannot be
    identified (p = 1) count as nulls, which keeps the estimate high (conservative).
    """
    pv = np.asarray(p, dtype=np.float64)
    pv = pv[np.isfinite(pv)]
    if pv.size == 0:
        return 1.0
    return float(min(1.0, (np.count_nonzero(pv > lam) + 1) / (pv.size * (1.0 - lam))))


def adaptive_q_values(p: np.ndarray, lam: float = PI0_LAMBDA) -> tuple[np.ndarray, float]:
    """q-values that estimate the share of wrong hits (Storey's q-value): Benjamini-Hochberg's adjusted p-values
    (``bh_q_values``) times ``storey_pi0(p, lam)``. Shape of ``p``; NaN stays NaN. Returns (q, pi0).

    BH alone assumes every hit could be wrong (pi0 = 1); where many queries are in the library that overstates
    the FDR about twofold (``benchmarks/fdr_calibration.py``); where nearly all are unknown, pi0 is near 1 and the
    q-values are BH's.
    """
    pi0 = storey_pi0(p, lam)
    return np.minimum(bh_q_values(p) * pi0, 1.0), pi0


def unit_q_values(p: np.ndarray, units: np.ndarray | None, lam: float = PI0_LAMBDA) -> tuple[np.ndarray, float]:
    """``adaptive_q_values`` with each unit of repeated measurements counted once: ``units`` (shape of ``p``; any
    hashable id: ``ion_units`` gives the LC-MS feature a spectrum was mapped to, or an unmapped ion's repeated
    triggers) groups spectra of one ion triggered again and again. None: every p-value is its own unit (the plain
    q-values).

    Why. Benjamini-Hochberg counts discoveries: an ion fragmented 18 times in a run adds 18 discoveries, which shrink
    every other spectrum's q (and Storey's pi0), so a weak wrong hit passed beside a heavily triggered right one (a
    fresh user's run: q 0.0034 on p 0.0056; simulated runs of 20 right ions triggered 5-19 times and 150 wrong ions
    triggered 1-3 times gave 24 % wrong ions among those accepted at 5 % with each spectrum counted, 5 % with units).
    Here a spectrum's q is ``pi0 * min_{t >= p} (m * t / R(t))`` with m the units with a p-value and R(t) the units
    holding a p-value at or below t (BH over units, each discovered by its best spectrum); ``pi0`` is Storey's
    estimate (``storey_pi0``) over the units' Simes (1986) p-values, valid under the positive dependence of one ion's
    spectra (Sarkar 1998). NaN stays NaN. Returns (q, pi0).
    """
    pv = np.asarray(p, dtype=np.float64)
    if units is None:
        return adaptive_q_values(pv, lam)
    out = np.full(pv.shape, np.nan)
    ok = np.isfinite(pv)
    if not ok.any():
        return out, 1.0
    _, unit = np.unique(np.asarray(units, dtype=object)[ok].astype(str), return_inverse=True)
    x = pv[ok]
    order = np.lexsort((x, unit))  # by unit, then p
    su, sx = unit[order], x[order]
    first = np.r_[0, np.flatnonzero(np.diff(su)) + 1]
    size = np.diff(np.r_[first, su.size])
    rank = np.arange(su.size) - np.repeat(first, size) + 1
    simes = np.minimum.reduceat(np.repeat(size, size) * sx / rank, first)
    best = sx[first]  # each unit's smallest p-value: the spectrum that discovers it
    pi0 = storey_pi0(np.minimum(simes, 1.0), lam)
    m = best.size
    discovered = np.searchsorted(np.sort(best), x, side="right")  # units with a p-value <= each spectrum's p
    value = x * m / np.maximum(discovered, 1)
    by_p = np.argsort(x, kind="stable")
    q = np.empty_like(x)
    q[by_p] = np.minimum.accumulate(value[by_p][::-1])[::-1]  # monotone in p, as BH's step-up
    out[ok] = np.minimum(q * pi0, 1.0)
    return out, pi0


def ion_units(feature_ids: list[str | None], precursor_mz: np.ndarray, rt_s: np.ndarray, ppm: float,
              rt_gap_s: float = ION_RT_GAP_S) -> np.ndarray:
    """The unit of each spectrum for ``unit_q_values`` (shape (n,), object): its feature id where detection mapped
    it; else one ion's repeated triggers grouped: spectra whose precursor m/z chain within ``ppm`` of each other and
    whose retention times (s) chain within ``rt_gap_s``, named "ion:<first spectrum's index>". A fresh user's
    excerpt held 18 triggers of one unmapped ion (no feature was detected for it), each of which counted as a
    discovery. NaN m/z or RT: a unit of its own."""
    units = np.array(list(feature_ids), dtype=object)
    free = np.flatnonzero([f is None for f in feature_ids])
    mz = np.asarray(precursor_mz, dtype=np.float64)
    rt = np.asarray(rt_s, dtype=np.float64)
    ok = free[np.isfinite(mz[free]) & np.isfinite(rt[free])]
    for i in np.setdiff1d(free, ok):
        units[i] = f"ion:{i}"
    order = ok[np.argsort(mz[ok], kind="stable")]
    start = 0
    for k in range(1, order.size + 1):  # runs of m/z within ppm of the previous one, then split on RT gaps
        if k < order.size and mz[order[k]] - mz[order[k - 1]] <= ppm * 1e-6 * mz[order[k]]:
            continue
        block = order[start:k]
        block = block[np.argsort(rt[block], kind="stable")]
        first = block[0]
        for j, i in enumerate(block):
            if j and rt[i] - rt[block[j - 1]] > rt_gap_s:
                first = i
            units[i] = f"ion:{first}"
        start = k
    return units


def learn_isomer_margin(gap: np.ndarray, wrong: np.ndarray, target: float = ISOMER_ERROR_TARGET) -> float:
    """Smallest score margin above which a wrong isomer is rank-1 in at most ``target`` of the searches, among at
    least ``ceil(1 / target)`` searches (50 at 2 %: fewer cannot show a rate that small).

    ``gap``: per self-search (leave-one-spectrum-out, structure present, with at least one isomer candidate) the
    rank-1 score minus the best score of another structure of rank-1's formula; ``wrong``: rank-1 is not the
    query's structure. Returns the margin in score units (0.0 when even gap > 0 meets the target), or ``NO_MARGIN``
    when no margin does or too few searches support one (a small library: the demo's calibration had 12), so that
    a hit with any identifiable isomer candidate stays level 3. Used only without a level-2 model.
    """
    gap = np.asarray(gap, dtype=np.float64)
    wrong = np.asarray(wrong, dtype=bool)
    support = int(np.ceil(1.0 / target))
    for m in np.unique(np.r_[0.0, np.sort(gap)]):
        sel = gap > m
        if sel.sum() < support:
            break
        if wrong[sel].mean() <= target:
            return float(m)
    return NO_MARGIN


def superclass(compound_class: str | None) -> str | None:
    """The class used to stratify the structure null: for a ChemOnt path ("CHEMONTID:...; Organic compounds;
    Lipids and lipid-like molecules; ...") its superclass (third element), else the first element; None if empty."""
    if not compound_class:
        return None
    parts = [x.strip() for x in str(compound_class).replace("/", ";").split(";") if x.strip()]
    if parts and parts[0].upper().startswith("CHEMONTID"):
        parts = parts[1:]
    if len(parts) >= 2 and parts[0].lower() in ("organic compounds", "inorganic compounds"):
        return parts[1]
    return parts[0] if parts else None


def library_codes(metadata: Any) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes per library spectrum: (structure, formula), -1 where unknown.

    ``metadata`` is a library index's metadata table (polars, columns ``inchikey``, ``name``, ``formula``).
    The structure is the first InChIKey block (the 2-D skeleton), or the lower-cased name where the InChIKey is
    missing; the formula is compared as written with spaces removed.
    """
    import polars as pl

    block = pl.col("inchikey").str.slice(0, 14)
    key = (pl.when(pl.col("inchikey").str.len_chars() >= 14).then(block)
           .otherwise(pl.lit("name:") + pl.col("name").str.to_lowercase()))
    codes = metadata.select(
        structure=key.rank("dense").cast(pl.Int64).fill_null(0) - 1,
        formula=pl.when(pl.col("formula").str.strip_chars().str.len_chars() > 0)
        .then(pl.col("formula").str.replace_all(" ", "")).rank("dense").cast(pl.Int64).fill_null(0) - 1,
    )
    return codes["structure"].to_numpy(), codes["formula"].to_numpy()


def distinct_per_query(q_of: np.ndarray, codes: np.ndarray, n_queries: int) -> np.ndarray:
    """Number of distinct ``codes`` (e.g. structures) among each query's candidate pairs; shape (n_queries,).

    Candidates are counted as structures, not spectra: a library holds many spectra of one structure (collision
    energies, instruments) whose scores move together, so they are one chance of a wrong hit, not many.
    """
    q_of = np.asarray(q_of, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    if q_of.size == 0:
        return np.zeros(n_queries, dtype=np.int64)
    pairs = np.unique(np.stack([q_of, codes], axis=1), axis=0)
    return np.bincount(pairs[:, 0], minlength=n_queries)


def embedding_only_clause(entropy: pl.Expr, modified_cosine: pl.Expr, embedding: pl.Expr) -> pl.Expr:
    """The end of a low-cosine evidence note when the fragment peaks barely agree by every spectral score (entropy
    and modified cosine below ``LOW_COSINE``, or absent) and only the embedding is high (at least ``LOW_COSINE``):
    "; the fragment peaks barely agree (...): the name rests on the encoder's embedding similarity"; "" otherwise.
    Trial AF: isomers absent from the library were named at cosine 0.03-0.09 and entropy 0.2 on the embedding
    alone (0.82-0.96), and the note read as if entropy had agreed too."""
    low = pl.lit(LOW_COSINE)
    weak = (entropy.fill_null(0.0) < low) & (modified_cosine.fill_null(0.0) < low) & (embedding >= low)
    return pl.when(weak.fill_null(False)).then(pl.lit(
        f"; the fragment peaks barely agree (cosine, entropy and modified cosine below {LOW_COSINE}): the name rests "
        "on the encoder's embedding similarity, which places isomers close together, so another structure of the "
        "formula is as likely")).otherwise(pl.lit(""))
