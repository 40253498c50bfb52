"""The combined score of a query-candidate pair, and how it is chosen for a search.

Fixed weights: the weighted mean of the available scores (entropy 0.5, cosine 0.25, modified cosine 0.25,
embedding 0.25, renormalised over the scores present). Learned weights: the logistic model a ``combined.json``
beside an encoder checkpoint holds (written by ``ms2study learn-combined``), over cosine, modified cosine, entropy,
embedding similarity and matched peaks (the precursor error's weight is stored but not used:
``PRECURSOR_ERROR_AS_EVIDENCE``); it is used only when the query embeddings come from that very trained encoder.
An untrained encoder's embedding similarity never enters the combined score. A candidate sharing fewer than
``min_matched_peaks`` fragment peaks with the query is never an identification (``identifiable``).
Imports core, encoder.checkpoints and identification.pairs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.core.flat import FlatSpectra
from ms2study.encoder.checkpoints import resolve_model_dir
from ms2study.identification.pairs import PreparedLibrary, identifiable

log = logging.getLogger(__name__)


COMBINED_FILE = "combined.json"


FORMAT_NAME = "ms2study-combined-score"


FORMAT_VERSION = 1


# Per-candidate features, in the order of the stored weights.
FEATURES = (
    "cosine", "modified_cosine", "entropy", "embedding",
    "matched_fraction",      # cosine-matched peaks / query peaks
    "log_matched_peaks",     # log(1 + cosine-matched peaks)
    "abs_ppm_error",         # |precursor error| in ppm
)


SPECTRAL_FEATURES = tuple(f for f in FEATURES if f != "embedding")


# Whether the precursor error inside the search window counts as evidence. It does not (since calibration format 4):
# the weights were learned on library spectra searched against the library, where a right candidate's precursor is
# the query's own exact m/z, so any error looked like a wrong compound (-0.37 logits per ppm); a measured precursor
# carries the instrument's error (1-3 ppm on an Orbitrap, 5-15 ppm on a QTOF), and a fresh user's TripleTOF run of a
# pesticide mix had right matches at cosine 0.99 and 15 ppm scored p 0.95, none accepted. The window
# (precursor_tolerance_ppm / _da) is the instrument's tolerance; inside it the spectra decide.
PRECURSOR_ERROR_AS_EVIDENCE = False


def candidate_features(
    scores: dict[str, np.ndarray], query_peaks: np.ndarray, ppm_error: np.ndarray
) -> dict[str, np.ndarray]:
    """The features of FEATURES for candidate pairs, from ``annotate.score_pairs`` output.

    ``query_peaks`` is the query's peak count per pair, ``ppm_error`` the precursor error per pair (entered as 0
    unless PRECURSOR_ERROR_AS_EVIDENCE: see there). Scores are clipped to [0, 1] (negative embedding cosines carry
    no more evidence than 0).
    """
    matched = np.asarray(scores["matched_peaks"], dtype=np.float64)
    return {
        "cosine": np.clip(np.asarray(scores["cosine"], dtype=np.float64), 0.0, 1.0),
        "modified_cosine": np.clip(np.asarray(scores["modified_cosine"], dtype=np.float64), 0.0, 1.0),
        "entropy": np.clip(np.asarray(scores["entropy"], dtype=np.float64), 0.0, 1.0),
        "embedding": np.clip(np.asarray(scores["embedding"], dtype=np.float64), 0.0, 1.0),
        "matched_fraction": matched / np.maximum(np.asarray(query_peaks, dtype=np.float64), 1.0),
        "log_matched_peaks": np.log1p(matched),
        "abs_ppm_error": (np.abs(np.asarray(ppm_error, dtype=np.float64)) if PRECURSOR_ERROR_AS_EVIDENCE
                          else np.zeros(matched.shape[0])),
    }


@dataclass
class LearnedCombiner:
    """Weights read from a ``combined.json``: ``models[name] = {features, weights, intercept}``."""

    model_id: str
    models: dict[str, dict[str, Any]]
    path: Path | None = None
    record: dict[str, Any] = field(default_factory=dict)

    def _linear(self, name: str, features: dict[str, np.ndarray]) -> np.ndarray:
        m = self.models[name]
        z = np.full(np.asarray(features["cosine"]).shape[0], float(m["intercept"]))
        for f, w in zip(m["features"], m["weights"]):
            z = z + float(w) * np.nan_to_num(np.asarray(features[f], dtype=np.float64), nan=0.0)
        return 1.0 / (1.0 + np.exp(-z))

    def score(self, features: dict[str, np.ndarray], use_embedding: bool = True) -> np.ndarray:
        """Probability-like combined score per pair; pairs without a finite embedding use the spectral model."""
        spectral = self._linear("spectral", features)
        if not use_embedding or "with_embedding" not in self.models:
            return spectral
        has = np.isfinite(np.asarray(features["embedding"], dtype=np.float64))
        if not has.any():
            return spectral
        return np.where(has, self._linear("with_embedding", features), spectral)


def load_combined(model_dir: str | Path | None) -> LearnedCombiner | None:
    """The learned weights stored in ``model_dir/combined.json``, or None when there are none."""
    if model_dir is None:
        return None
    path = Path(model_dir) / COMBINED_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{COMBINED_FILE} is not valid JSON ({err})", file=str(path),
                         fix="run 'ms2study learn-combined' again for this model") from err
    if meta.get("format") != FORMAT_NAME or meta.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{COMBINED_FILE} has format {meta.get('format')!r} v{meta.get('format_version')!r}, "
                         f"expected {FORMAT_NAME!r} v{FORMAT_VERSION}", file=str(path),
                         fix="run 'ms2study learn-combined' again for this model")
    models = meta.get("models", {})
    for name, m in models.items():
        if len(m.get("features", [])) != len(m.get("weights", [])) or set(m["features"]) - set(FEATURES):
            raise InputError(f"{COMBINED_FILE}: model '{name}' has inconsistent features/weights", file=str(path))
    if "spectral" not in models:
        raise InputError(f"{COMBINED_FILE} lacks the 'spectral' model", file=str(path))
    return LearnedCombiner(model_id=str(meta.get("model_id")), models=models, path=path, record=meta)


SCORE_NAMES = ("cosine", "modified_cosine", "entropy", "embedding")


def combined_score(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of the available scores (NaN scores and their weights left out); negatives count as 0."""
    num = np.zeros(scores["cosine"].shape[0])
    den = np.zeros_like(num)
    for name in SCORE_NAMES:
        w = float(weights.get(name, 0.0))
        if w <= 0:
            continue
        s = scores[name]
        ok = np.isfinite(s)
        num += np.where(ok, w * np.clip(s, 0.0, 1.0), 0.0)
        den += np.where(ok, w, 0.0)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def ranking_score(queries: FlatSpectra, lib: PreparedLibrary, cand_offsets: np.ndarray, cand_lib: np.ndarray,
                  scores: dict[str, np.ndarray], p: dict, plan: CombinePlan) -> np.ndarray:
    """The score candidates are ranked by (``rank_by``): the combined score of ``plan`` or one of SCORE_NAMES;
    -inf for candidates that share fewer than ``min_matched_peaks`` fragment peaks with the query
    (``identifiable``), which can never be an identification."""
    if p["rank_by"] == "combined":
        key = plan.combined(queries, lib, cand_offsets, cand_lib, scores, p)
    else:
        key = np.asarray(scores[p["rank_by"]], dtype=np.float64)
    return np.where(identifiable(scores, p), key, -np.inf)


def _spectral_weights(p: dict) -> dict[str, float]:
    # Decoys have no embeddings, so target and decoy compete on the spectral scores only.
    return {k: v for k, v in p["weights"].items() if k != "embedding"}


@dataclass
class CombinePlan:
    """How the combined score is computed for one call: learned weights, or fixed ones (with/without embedding)."""

    learned: LearnedCombiner | None
    use_embedding: bool            # the embedding similarity may enter the combined score
    model_id: str | None
    description: str

    @property
    def kind(self) -> str:
        """learned | fixed+embedding | fixed (what a library calibration must match)."""
        return "learned" if self.learned is not None else ("fixed+embedding" if self.use_embedding else "fixed")

    def combined(self, queries: FlatSpectra, lib: PreparedLibrary, cand_offsets: np.ndarray, cand_lib: np.ndarray,
                 scores: dict[str, np.ndarray], p: dict, spectral_only: bool = False) -> np.ndarray:
        """The combined score of candidate pairs (aligned with ``cand_lib``)."""
        q_of = np.repeat(np.arange(queries.precursor_mz.size), np.diff(cand_offsets))
        l_prec = np.asarray(lib.index.precursor_mz)[cand_lib]
        return self.combined_from(scores, np.diff(queries.offsets)[q_of],
                                  (queries.precursor_mz[q_of] - l_prec) / l_prec * 1e6, p, spectral_only)

    def combined_from(self, scores: dict[str, np.ndarray], query_peaks: np.ndarray, ppm_error: np.ndarray, p: dict,
                      spectral_only: bool = False) -> np.ndarray:
        """The combined score from per-pair scores, query peak counts and precursor errors (ppm)."""
        if self.learned is None:
            weights = _spectral_weights(p) if spectral_only or not self.use_embedding else p["weights"]
            return combined_score(scores, weights)
        feats = candidate_features(scores, query_peaks, ppm_error)
        return self.learned.score(feats, use_embedding=not spectral_only)


def embeddings_model(embeddings: pl.DataFrame | None) -> tuple[str | None, bool]:
    """(model_id, trained) of a query embeddings table; tables without these columns count as trained."""
    if embeddings is None:
        return None, False
    model_id = None
    if "model_id" in embeddings.columns:
        ids = embeddings["model_id"].drop_nulls().unique().to_list()
        if len(ids) > 1:
            raise InputError(f"the embeddings table mixes encoders {sorted(ids)}",
                             fix="embed all spectra of a sample with one encoder")
        model_id = ids[0] if ids else None
    if "model_trained" in embeddings.columns:
        trained = bool(embeddings["model_trained"].fill_null(False).all())
    else:
        trained = not (model_id or "").startswith("untrained")
    return model_id, trained


def combine_plan(p: dict, model_id: str | None, trained: bool, have_embeddings: bool) -> CombinePlan:
    """Decide how ``combined`` is computed (see the module docstring)."""
    if not have_embeddings:
        return CombinePlan(None, False, model_id, "fixed weights, spectral scores (no embeddings)")
    if not trained:
        return CombinePlan(None, False, model_id,
                           f"fixed weights, spectral scores only: embeddings of {model_id or 'an untrained encoder'} "
                           "are untrained")
    if p["combine"] == "auto" and model_id is not None:
        learned = load_combined(resolve_model_dir(p["model"]))
        if learned is not None and learned.model_id == model_id:
            return CombinePlan(learned, True, model_id, f"learned weights {learned.path}")
        if learned is not None:
            log.warning("%s was learned for %s, but the embeddings come from %s: using the fixed weights",
                        learned.path, learned.model_id, model_id)
    return CombinePlan(None, True, model_id, "fixed weights incl. embedding")
