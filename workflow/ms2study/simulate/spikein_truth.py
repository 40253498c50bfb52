"""The ground truth of a spike-in study (``ms2study simulate --background``): the rows of ``ground_truth.tsv``, one
per sample and spiked compound, and the fold each compound's abundances realised in the study's samples.

Columns of ``ground_truth.tsv``: sample_id, compound_id, name, inchikey, chemical_class (ChemOnt path), mz ([M+H]+
from the formula, before the sample's calibration offset), mz_acquired (after it, before the per-centroid error),
rt_s (apex RT in that sample, drifted), rt_s_undrifted, fwhm_s, height (apex before per-sample variation and the
fold), abundance (apex as acquired in that sample: variation and, in a case, the fold included), present,
above_noise, in_library, adduct, formula, n_ms2 (MS2 scans added), ms2_coisolated (the mean share of the MS1
intensity isolated for its MS2 scans that came from co-eluting background ions, 0-1; empty without MS2), changed,
log_fold (ln, the planted effect in that sample), fold (the planted fold change: ``fold_change`` for a changed
compound, 1 otherwise), realised_fold (see ``with_realised_fold``), group, score, ms2_record (TITLE of the record
used as MS2), ms2_source (other_record | same_record_noised).

The planted fold is what the simulator multiplied in; the per-sample variation (a factor per sample and a field over
m/z and retention time whose log-sd is 0.45 at the median, :mod:`ms2study.simulate.spikein`) comes on top, so with
few samples the fold a compound shows can lie far from the one planted (a trial of 6 + 6 samples: planted 2.5x,
realised 1.1x to 3.7x over the changed compounds). ``realised_fold`` lets an audit tell the two apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl


def truth_rows(sample_id: str, group: str, score: float, compounds: list[Any], abundance: np.ndarray, var: Any,
               n_ms2: np.ndarray, fold: np.ndarray, exponent: float, ms1_floor: float,
               coisolated: np.ndarray) -> list[dict]:
    """The rows of ``ground_truth.tsv`` for one sample (columns: the module docstring, without ``realised_fold``):
    ``compounds`` the spiked compounds (``spikein.Spiked``), ``abundance`` their apex heights in this sample,
    ``var`` the sample's ``spikein_variation.Variation`` (drift and calibration), ``n_ms2`` the MS2 scans added per
    compound, ``fold`` the planted folds and ``exponent`` the share of them this sample carries (1 in a case, 0 in a
    control; (score - 5) / 10 for the effect "score"), ``ms1_floor`` the intensity below which a peak is not
    written, ``coisolated`` the mean co-isolated share of each compound's MS2 scans (NaN: none)."""
    return [{"sample_id": sample_id, "compound_id": k, "name": c.name, "inchikey": c.inchikey,
             "chemical_class": c.chemical_class, "mz": c.mz, "mz_acquired": c.mz * (1.0 + var.calibration_ppm * 1e-6),
             "rt_s": float(var.drift(c.rt_s)), "rt_s_undrifted": c.rt_s, "fwhm_s": c.fwhm_s, "height": c.height,
             "abundance": float(abundance[k]), "present": True, "above_noise": bool(abundance[k] >= ms1_floor),
             "in_library": c.in_library, "adduct": "[M+H]+", "formula": c.formula, "n_ms2": int(n_ms2[k]),
             "ms2_coisolated": None if np.isnan(coisolated[k]) else round(float(coisolated[k]), 4),
             "changed": c.changed, "log_fold": float(np.log(fold[k]) * exponent), "fold": float(fold[k]),
             "group": group, "score": float(score), "ms2_record": c.query.fields.get("TITLE", ""),
             "ms2_source": c.ms2_source} for k, c in enumerate(compounds)]


def with_realised_fold(truth: pl.DataFrame, effect: str = "group") -> pl.DataFrame:
    """``truth`` (the rows of ``truth_rows`` over every sample) with ``realised_fold`` after ``fold``: per compound
    (changed or not), the fold its abundances show in these samples. Effect "group": the geometric mean of the
    cases' abundance over the controls' (exp of the difference of mean ln abundance; runs where the compound is
    absent, abundance 0 in the demo profile, are left out; null when a group has none). Effect "score": the fold
    from the lowest to the highest score (0 to 10) of the least-squares line of ln abundance on score, exp(10 x
    slope), as ``fold`` is meant there. Compare it with ``fold``, the one planted."""
    log = pl.when(pl.col("abundance") > 0).then(pl.col("abundance").log())  # an absent compound: no ratio
    if effect == "score":
        score = pl.col("score")
        slope = ((score - score.mean()) * (log - log.mean())).sum() / ((score - score.mean()) ** 2).sum()
        realised = (10.0 * slope).exp()
    else:
        realised = (log.filter(pl.col("group") == "case").mean()
                    - log.filter(pl.col("group") == "control").mean()).exp()
    per = truth.group_by("compound_id").agg(realised.alias("realised_fold"))
    order = [*truth.columns[:truth.columns.index("fold") + 1], "realised_fold",
             *truth.columns[truth.columns.index("fold") + 1:]]
    return truth.join(per, on="compound_id", how="left", maintain_order="left").select(order)
