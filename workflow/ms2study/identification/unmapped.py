"""Names accepted on MS/MS scans that map to no MS1 feature: not dropped in silence.

The study's identifications (``stages.identify``) are per consensus feature, so an accepted rank-1 hit on a scan whose
precursor lies in no feature's hull (``spectra`` stage: ``feature_id`` null) has no row there and no quantity. A
trial on a SCIEX TripleTOF run (an MS1 scan every ~0.9 s): methyl anthranilate, accepted in 12 of 12 samples at
q <= 0.001, was absent from the identifications and the report without a word, its 4-scan MS1 peak shorter than
``detect: min_trace_length_s``. ``unmapped_names`` lists such compounds (those the study names on no feature) for the
identify stage's log and the report. Imports nothing of ms2study beyond polars-level helpers.
"""

from __future__ import annotations

import polars as pl

SHOWN = 10  # compounds named in a log line or a caution


def _identity(frame: pl.DataFrame) -> pl.Expr:
    """First InChIKey block, else the lower-cased library name (as ``stages.identify`` votes)."""
    key = pl.col("library_inchikey") if "library_inchikey" in frame.columns else pl.lit(None, dtype=pl.Utf8)
    return (pl.when(key.str.len_chars() >= 14).then(key.str.slice(0, 14))
            .otherwise(pl.lit("name:") + pl.col("library_name").fill_null("?").str.to_lowercase()))


def unmapped_names(annotations: pl.DataFrame, identifications: pl.DataFrame | None = None) -> pl.DataFrame:
    """Compounds accepted (rank 1, ``accepted`` true) on scans with no ``feature_id`` that the study does not weigh on
    any consensus feature (``identifications``' rows, accepted or refused, by first InChIKey block or name; None:
    none): a compound the study refused on its features is not listed as "accepted" here (trial O: a bacterial
    metabolite at cosine 0.24-0.31, refused on two consensus features at q 0.0146, came back in this warning with
    its best per-run q 0.0051 and "no row in the study's identifications").
    One row per compound, most runs first: name, inchikey, n_spectra, n_runs, best_q (lowest q_value), best_cosine.
    Empty (those columns) when the annotations lack ``feature_id`` or ``accepted``."""
    schema = {"name": pl.Utf8, "inchikey": pl.Utf8, "n_spectra": pl.UInt32, "n_runs": pl.UInt32,
              "best_q": pl.Float64, "best_cosine": pl.Float64}
    if annotations.is_empty() or not {"feature_id", "accepted", "rank", "library_name"} <= set(annotations.columns):
        return pl.DataFrame(schema=schema)
    hits = annotations.filter((pl.col("rank") == 1) & pl.col("accepted").fill_null(False)
                              & pl.col("feature_id").is_null())
    if hits.is_empty():
        return pl.DataFrame(schema=schema)
    hits = hits.with_columns(_identity(hits).alias("_identity"))
    if identifications is not None and identifications.height and "accepted" in identifications.columns:
        named = identifications.rename({"inchikey": "library_inchikey", "name": "library_name"}, strict=False)
        if "library_name" in named.columns:
            hits = hits.filter(~pl.col("_identity").is_in(named.select(_identity(named))[:, 0].to_list()))
    q = pl.col("q_value").min() if "q_value" in hits.columns else pl.lit(None, dtype=pl.Float64)
    cosine = pl.col("cosine").max() if "cosine" in hits.columns else pl.lit(None, dtype=pl.Float64)
    inchikey = (pl.col("library_inchikey").drop_nulls().first() if "library_inchikey" in hits.columns
                else pl.lit(None, dtype=pl.Utf8))
    return (hits.group_by("_identity")
            .agg(pl.col("library_name").drop_nulls().first().alias("name"), inchikey.alias("inchikey"),
                 pl.col("spectrum_id").n_unique().cast(pl.UInt32).alias("n_spectra"),
                 pl.col("sample_id").n_unique().cast(pl.UInt32).alias("n_runs"),
                 q.cast(pl.Float64).alias("best_q"), cosine.cast(pl.Float64).alias("best_cosine"))
            .sort(["n_runs", "best_q", "name"], descending=[True, False, False], nulls_last=True)
            .select(list(schema)).cast(schema))


def unmapped_sentence(names: pl.DataFrame, html: bool = False) -> str | None:
    """One sentence on ``unmapped_names`` (None when empty): how many compounds, the first ``SHOWN`` with their
    spectra, runs and lowest q, why they have no row (their MS1 peak was not detected as a feature) and what to
    check. ``html``: escape the names and mark config keys as code."""
    if names.is_empty():
        return None
    from html import escape

    def text(value: str) -> str:
        return escape(value) if html else value

    def code(value: str) -> str:
        return f"<code>{value}</code>" if html else value

    shown = "; ".join(f"{text(str(r['name']))} ({r['n_spectra']} spectra in {r['n_runs']} runs, q "
                      f"{'NA' if r['best_q'] is None else format(r['best_q'], '.2g')})"
                      for r in names.head(SHOWN).iter_rows(named=True))
    more = f"; and {names.height - SHOWN} more" if names.height > SHOWN else ""
    return (f"{names.height} compound(s) accepted by their runs' searches on MS/MS scans that map to no MS1 feature "
            f"have no row in the "
            f"study's identifications and no quantity: {shown}{more}. Their precursors lie in no detected feature: "
            f"an MS1 peak shorter than {code('detect: min_trace_length_s')} (a peak spanning few MS1 scans on a slow "
            f"instrument), below {code('detect: noise_threshold_int')}, outside the features' m/z window "
            f"({code('detect: mass_error_ppm')}), or merged with a co-eluting ion a few mDa away that the "
            "instrument does not resolve (e.g. another compound's 13C peak on a time-of-flight instrument), which "
            "moves the feature's m/z off the precursor; the spectra are in annotations.parquet (feature_id empty), and "
            "config/README.md ('Instrument settings') says how to set these keys")
