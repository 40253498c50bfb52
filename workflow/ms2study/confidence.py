"""Identification confidence: an empirical null from leave-structure-out library searches, q-values, MSI levels.

Why not target-decoy. Random-fragment decoys almost never match a query within 0.02 Da, so every real library
spectrum, right or wrong, beats its decoy and the competition controls nothing (measured: about 11 % false hits
among hits accepted at "1 % FDR" on held-out MassBank queries). What a false identification looks like is a real
spectrum of ANOTHER compound that happens to score high. So the null distribution is measured on the library
itself (``ms2study.calibrate``): library spectra are searched as queries against the library with every spectrum
of their own structure (first InChIKey block) removed, exactly the situation of a compound that is not in the
library ("known unknown"). For each such null search we keep the number of candidates ``n`` in the precursor
window and the best score among candidates of a different molecular formula (the formula null: a hit of that
kind is wrong at every confidence level) and among candidates of a different structure (the structure null: wrong
at level 2). Half of the null queries are degraded like low-concentration measurements so that noisy sample
spectra are covered.

p-values. The rank-1 score ``s`` of a query with ``n`` candidates gets ``p = P(null best score >= s)`` within the
stratum of null searches with a similar candidate count (strata by powers of two of ``n``, small strata merged
upward); a query with more candidates than the stratum's median gets a Sidak-scaled p-value. Where fewer than 10
null scores reach ``s`` the tail is extrapolated with an exponential fitted to the exceedances over a high
threshold on the logit scale (the peaks-over-threshold estimate of Knijnenburg et al., Bioinformatics 25:i161,
2009), so that p-values smaller than ``1/N`` can be resolved; only when at least 20 null scores show real
spectral agreement (> TAIL_FLOOR), otherwise p stays at least ``1/(N+1)``: a small library cannot certify more. q-values follow from
Benjamini & Hochberg (1995) over the rank-1 hits of one search (one sample, or one query file).

Assumptions, stated because the q-values rest on them: the library's structures are exchangeable with the
compounds behind the unknown queries (a library rich in one chemical class gives a null fit for that class),
and sample spectra are no worse than the degraded library spectra. ``benchmarks/fdr_calibration.py`` measures
whether the q-values hold on structure-disjoint held-out queries with known unknowns.

MSI levels (Schymanski et al., Environ. Sci. Technol. 48:2097, 2014). An accepted hit is level 2 (probable
structure by library spectrum match) only when it singles out one structure: its structure-null q-value passes
the same FDR, and no other structure of the same formula scores within ``isomer_margin`` of it. The margin is
learned on the library (leave-one-spectrum-out searches: the smallest margin above which a wrong isomer wins in
at most ``ISOMER_ERROR_TARGET`` of the searches), never on the queries being scored. Otherwise it is level 3
(tentative candidate: the formula/class is supported but isomers are plausible), and ``isomer_inchikeys`` lists
the candidates within the margin.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ms2study.atomic import write_text
from ms2study.errors import InputError

FORMAT_NAME = "ms2study-identification-calibration"
FORMAT_VERSION = 1

MIN_STRATUM = 200          # null searches per candidate-count stratum (smaller strata are merged upward)
MIN_EXCEEDANCES = 10       # fewer null scores >= s: the tail is extrapolated
TAIL_FRACTION = 0.1        # share of a stratum's null scores used to fit the exponential tail
TAIL_FLOOR = 0.05          # null scores at or below this (no real spectral agreement) never shape the tail
ISOMER_ERROR_TARGET = 0.02 # wrong-isomer rate allowed among level-2 self-search hits when learning the margin
_EPS = 1e-6


def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(np.asarray(s, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(s) - np.log1p(-s)


def count_stratum(n_candidates: np.ndarray) -> np.ndarray:
    """Stratum of each candidate count: floor(log2(n)) (n >= 1), i.e. 1, 2-3, 4-7, ...; n = 0 -> 0."""
    n = np.maximum(np.asarray(n_candidates, dtype=np.int64), 1)
    return np.floor(np.log2(n)).astype(np.int64)


@dataclass
class NullStratum:
    """Null best scores of one stratum (sorted ascending; -inf = no wrong candidate of that kind).

    ``median_candidates``: the median number of wrong candidates behind these best scores; a query with more
    candidates gets its p-value scaled up (``scaled_p_values``).
    """

    min_stratum: int
    scores: np.ndarray
    median_candidates: float = 1.0

    def scaled_p_values(self, s: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
        """p-values for queries with ``n_candidates`` wrong candidates each: where that exceeds the stratum's
        median, ``1 - (1 - p)^(n / median)`` (Sidak: the best of n independent wrong candidates instead of the
        median's), conservative when the candidates' scores are positively associated."""
        p = self.p_values(s)
        ratio = np.maximum(np.asarray(n_candidates, dtype=np.float64) / max(self.median_candidates, 1.0), 1.0)
        return np.where(ratio > 1.0, -np.expm1(ratio * np.log1p(-np.minimum(p, 1.0 - 1e-16))), p)

    def p_values(self, s: np.ndarray) -> np.ndarray:
        """P(null best >= s) for each score in ``s``: empirical, with an exponential tail beyond the data."""
        v = self.scores
        n = v.size
        s = np.asarray(s, dtype=np.float64)
        count = n - np.searchsorted(v, s, side="left")
        p = (count + 1.0) / (n + 1.0)
        # Only a tail with enough graded scores is extrapolated: a null made of zeros and a few chance matches
        # (a small library) says nothing about how fast the tail falls, so p stays at least 1/(N+1) there.
        finite = v[np.isfinite(v) & (v > TAIL_FLOOR)]
        k = max(MIN_EXCEEDANCES, int(round(TAIL_FRACTION * n)))
        thin = count < MIN_EXCEEDANCES
        if thin.any() and finite.size >= 2 * MIN_EXCEEDANCES:
            k = min(k, finite.size - 1)
            top = _logit(finite[-k:])
            u = _logit(finite[-k - 1])
            beta = max(float(np.mean(top - u)), 1e-3)
            tail = (k / n) * np.exp(-np.maximum(_logit(s[thin]) - u, 0.0) / beta)
            p[thin] = np.minimum(p[thin], tail)
        return np.clip(p, 1e-300, 1.0)


def _strata(n_candidates: np.ndarray, best: np.ndarray) -> list[NullStratum]:
    """Candidate-count strata of at least MIN_STRATUM null searches (small ones merged into the next higher)."""
    n_candidates = np.asarray(n_candidates, dtype=np.int64)
    st = count_stratum(n_candidates)
    best = np.asarray(best, dtype=np.float64)
    groups: list[list[int]] = []
    pending: list[int] = []
    for lv in np.unique(st).tolist():
        pending.append(lv)
        if np.isin(st, pending).sum() >= MIN_STRATUM:
            groups.append(pending)
            pending = []
    if pending:  # the highest counts join the last full stratum
        if groups:
            groups[-1] = groups[-1] + pending
        else:
            groups.append(pending)
    out = []
    for levels in groups:
        sel = np.isin(st, levels)
        out.append(NullStratum(int(levels[0]), np.sort(best[sel]), float(np.median(n_candidates[sel]))))
    return out


@dataclass
class Calibration:
    """A library's identification null and isomer margin, for one scoring configuration.

    ``formula`` / ``structure``: strata of null best scores (see the module docstring); ``isomer_margin`` in
    score units; ``scoring`` describes the score the nulls were measured with (``rank_by``, the combined-score
    plan and the encoder ``model_id``): a calibration only applies to searches that score the same way.
    """

    scoring: dict[str, Any]
    formula: list[NullStratum]
    structure: list[NullStratum]
    isomer_margin: float
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_null(cls, n_candidates: np.ndarray, formula_best: np.ndarray, structure_best: np.ndarray,
                  isomer_margin: float, scoring: dict[str, Any], stats: dict[str, Any] | None = None,
                  n_formula_candidates: np.ndarray | None = None) -> Calibration:
        """Build from null searches: per search the number of candidate structures (all of another structure than
        the query's), the best wrong-formula score (-inf when every candidate shares the query's formula: then no
        wrong-formula hit was possible) and the best wrong-structure score. Both nulls are stratified by the
        candidate count, which is what a search sees; under the exchangeability assumption (unknowns are like the
        library's compounds) a query with n candidates has the null of a library compound with n candidates.
        ``n_formula_candidates`` (optional): stratify the formula null by the number of wrong-formula candidates
        instead (searches without any dropped), a conservative variant when the query count is taken as its
        bound.

        Raises InputError when there are no null searches with candidates (the library is too small or has no
        InChIKeys), because q-values would then be asserted, not measured.
        """
        n_candidates = np.asarray(n_candidates, dtype=np.int64)
        n_formula = n_candidates if n_formula_candidates is None else np.asarray(n_formula_candidates, np.int64)
        has = n_candidates > 0
        if not has.any():
            raise InputError("no leave-structure-out search found a candidate: the library cannot calibrate "
                             "identification confidence",
                             fix="use a library with InChIKeys and several structures per precursor window, or set "
                                 "annotate confidence: none (no q-values) ")
        has_f = n_formula > 0
        formula = (_strata(n_formula[has_f], np.asarray(formula_best)[has_f]) if n_formula_candidates is not None
                   else _strata(n_candidates[has], np.asarray(formula_best)[has]))
        return cls(scoring, formula, _strata(n_candidates[has], np.asarray(structure_best)[has]),
                   float(isomer_margin), stats or {})

    def _p(self, strata: list[NullStratum], scores: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        st = count_stratum(n_candidates)
        lows = np.array([x.min_stratum for x in strata])
        which = np.clip(np.searchsorted(lows, st, side="right") - 1, 0, len(strata) - 1)
        out = np.ones(scores.shape)
        n = np.asarray(n_candidates)
        for k, stratum in enumerate(strata):
            sel = (which == k) & np.isfinite(scores)
            if sel.any():
                out[sel] = stratum.scaled_p_values(scores[sel], n[sel])
        return out

    def p_formula(self, scores: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
        """p-value of rank-1 scores against the wrong-formula null (shape of ``scores``)."""
        return self._p(self.formula, scores, n_candidates)

    def p_structure(self, scores: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
        """p-value of rank-1 scores against the wrong-structure null (isomers of other structures included)."""
        return self._p(self.structure, scores, n_candidates)

    def to_json(self) -> dict[str, Any]:
        def dump(strata: list[NullStratum]) -> list[dict]:
            return [{"min_log2_candidates": s.min_stratum, "median_candidates": s.median_candidates,
                     "scores": [None if not math.isfinite(x) else round(float(x), 7) for x in s.scores]}
                    for s in strata]
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "scoring": self.scoring,
                "isomer_margin": self.isomer_margin, "stats": self.stats,
                "formula_null": dump(self.formula), "structure_null": dump(self.structure)}

    def save(self, path: str | Path) -> Path:
        """Write as JSON (atomically); returns the path."""
        write_text(json.dumps(self.to_json(), indent=1), path)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration written by ``save``; InputError when it is not one."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read the identification calibration: {err}", file=str(path),
                             fix="rebuild it: delete the file and rerun the pipeline") from err
        if data.get("format") != FORMAT_NAME or data.get("version") != FORMAT_VERSION:
            raise InputError("not an identification calibration of this version", file=str(path),
                             fix="delete the file and rerun the pipeline to rebuild it")

        def load_strata(items: list[dict]) -> list[NullStratum]:
            return [NullStratum(int(x["min_log2_candidates"]),
                                np.array([-np.inf if v is None else v for v in x["scores"]], dtype=np.float64),
                                float(x["median_candidates"]))
                    for x in items]
        return cls(data["scoring"], load_strata(data["formula_null"]), load_strata(data["structure_null"]),
                   float(data["isomer_margin"]), data.get("stats", {}))


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


def learn_isomer_margin(gap: np.ndarray, wrong: np.ndarray, target: float = ISOMER_ERROR_TARGET) -> float:
    """Smallest score margin above which a wrong isomer is rank-1 in at most ``target`` of the searches.

    ``gap``: per self-search (leave-one-spectrum-out, structure present, with at least one isomer candidate) the
    rank-1 score minus the best score of another structure of rank-1's formula; ``wrong``: rank-1 is not the
    query's structure. Returns the margin in score units (0.0 when even gap > 0 meets the target; the largest
    observed gap when no margin does, so that every such hit is level 3).
    """
    gap = np.asarray(gap, dtype=np.float64)
    wrong = np.asarray(wrong, dtype=bool)
    if gap.size == 0:
        return 0.0
    for m in np.unique(np.r_[0.0, np.sort(gap)]):
        sel = gap > m
        if not sel.any():
            break
        if wrong[sel].mean() <= target:
            return float(m)
    return float(np.max(gap))


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
