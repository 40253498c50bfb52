"""One run's feature intensities carried over from the corrected study matrix, so that pooling weights (sample
embeddings, bags of chemistry) and the embedding model's attribution see the same drift/batch-corrected, gap-aware
abundances as the models and the differential tests.

Layer 4: imports ``core`` only; the ``pool_corrected`` stage (``ms2study pool-corrected``) runs it.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from ms2study.core.errors import InputError

log = logging.getLogger(__name__)

CORRECTED_FEATURES: dict[str, pl.DataType] = {
    "feature_id": pl.Utf8,
    "intensity": pl.Float64,       # the run's feature intensity times its consensus feature's correction factor
    "raw_intensity": pl.Float64,   # the detect stage's intensity
    "consensus_id": pl.Utf8,       # null when the feature is in no consensus feature
    "factor": pl.Float64,          # corrected / raw of the consensus feature in this run (the run's median if none)
    "excluded": pl.Boolean,        # its consensus feature is flagged (blank filter, QC RSD) and left out
}


def corrected_feature_intensities(features: pl.DataFrame, links: pl.DataFrame, raw_matrix: pl.DataFrame,
                                  corrected_matrix: pl.DataFrame, sample_id: str,
                                  exclude_flagged: bool = True) -> pl.DataFrame:
    """The run's features with their intensity corrected as the study matrix was (``CORRECTED_FEATURES`` frame, one
    row per row of ``features``, same order).

    For a feature linked to consensus feature c, ``factor = corrected[c, run] / raw[c, run]`` (the correct stage's
    QC-RLSC/median drift and batch factor, internal standards included) and ``intensity = raw intensity x factor``;
    a ratio rather than the matrix value, because several features of one run can sit in one consensus feature. A
    feature in no consensus feature, or whose consensus value is missing, takes the run's median factor (1 when the
    run has none). ``excluded`` marks features of consensus features the correct stage flagged (``excluded``
    column) when ``exclude_flagged``: pooling gives them weight 0, as the models leave them out.

    ``features``: feature_id, intensity. ``links``: consensus_id, sample_id, feature_id (link stage).
    ``raw_matrix`` / ``corrected_matrix``: consensus_id plus one column per run (the corrected one also
    ``excluded``). Raises InputError naming the run when a column or the run itself is missing.
    """
    for name, frame, columns in (("features", features, {"feature_id", "intensity"}),
                                 ("feature links", links, {"consensus_id", "sample_id", "feature_id"}),
                                 ("feature matrix", raw_matrix, {"consensus_id", sample_id}),
                                 ("corrected feature matrix", corrected_matrix, {"consensus_id", sample_id})):
        missing = columns - set(frame.columns)
        if missing:
            raise InputError(f"the {name} table lacks column(s) {sorted(missing)}", sample=sample_id,
                             fix="rerun the link and correct stages of this study (ms2study run)")
    flags = (pl.col("excluded").fill_null(False) if exclude_flagged and "excluded" in corrected_matrix.columns
             else pl.lit(False))
    ratio = raw_matrix.select("consensus_id", pl.col(sample_id).cast(pl.Float64).alias("raw")).join(
        corrected_matrix.select("consensus_id", pl.col(sample_id).cast(pl.Float64).alias("corrected"),
                                flags.alias("excluded")),
        on="consensus_id", how="inner",
    ).with_columns(
        pl.when((pl.col("raw") > 0) & pl.col("corrected").is_not_null() & pl.col("corrected").is_finite())
        .then(pl.col("corrected") / pl.col("raw")).otherwise(None).alias("factor")
    )
    good = ratio["factor"].drop_nulls().to_numpy()
    median = float(np.median(good)) if good.size else 1.0
    own = links.filter(pl.col("sample_id") == sample_id).select("feature_id", "consensus_id").unique(
        "feature_id", keep="first", maintain_order=True)
    out = (features.select(pl.col("feature_id").cast(pl.Utf8), pl.col("intensity").cast(pl.Float64).alias("raw_intensity"))
           .join(own, on="feature_id", how="left", maintain_order="left")
           .join(ratio.select("consensus_id", "factor", "excluded"), on="consensus_id", how="left",
                 maintain_order="left")
           .with_columns(pl.col("factor").fill_null(median), pl.col("excluded").fill_null(False))
           .with_columns((pl.col("raw_intensity") * pl.col("factor")).alias("intensity")))
    n_median = out.filter(pl.col("consensus_id").is_null()).height
    log.info("run '%s': %d features, median correction factor %.3f; %d without a consensus feature took it; "
             "%d excluded (flagged)", sample_id, out.height, median, n_median, int(out["excluded"].sum()))
    return out.select(list(CORRECTED_FEATURES)).cast(CORRECTED_FEATURES)
