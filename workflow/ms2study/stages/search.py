"""``ms2study score``: identify query spectra from a file against library files, as the pipeline does.

The queries (MGF, MSP, GNPS JSON or a pipeline ``spectra.parquet``) are read by the library readers
(``ms2study.io.queries.read_query_spectra``: one reader, so polarity and ids are read alike for queries and
references), cleaned like the library, embedded with the configured encoder (``model``, as in the embed stage),
and scored by the annotate stage against an index of the libraries that carries that encoder's embeddings. The
combined score is the encoder's learned one when present, and confidence comes from the library's calibration
(``ms2study.stages.calibrate``), all cached in the index folder so a second call reuses them.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.core.atomic import write_parquet
from ms2study.core.cleaning import clean_peaks
from ms2study.core.errors import InputError
from ms2study.core.params import add_params_argument, load_params
from ms2study.encoder import inference
from ms2study.identification import engine
from ms2study.identification.calibration import (SMALL_CALIBRATION, cached_calibration, no_acceptance_text,
                                                  small_library_text)
from ms2study.io.queries import read_query_spectra
from ms2study.library.index import ensure_library_index, load_library_index
from ms2study.library.prepared import prepare_for_params

log = logging.getLogger(__name__)

# Output columns of `ms2study score`, first and in this order (spectrum_id renamed to query_id).
SCORE_COLUMNS = [
    "query_id", "query_name", "rank", "library_id", "library_name", "library_inchikey", "library_smiles",
    "precursor_error_ppm", "cosine", "modified_cosine", "entropy", "embedding", "combined",
    "matched_peaks", "q_value", "accepted", "msi_level", "isomer_inchikeys",
]


def read_query_file(path: str | Path, cleaning: dict | None = None, default_ion_mode: str = "positive") -> pl.DataFrame:
    """Query spectra from a library-format file or a pipeline spectra.parquet (tables.SPECTRA columns).

    ``cleaning``: the library's cleaning parameters; queries that cleaning would empty are named in the log and
    left out (``ms2study.io.queries.read_query_spectra``); ``default_ion_mode``: the mode queries that state none
    are searched in (annotate's ``ion_mode``), logged with their number. Raises InputError naming the file when a
    parquet lacks the needed columns or no query can be searched.
    """
    path = Path(path)
    if path.name.endswith(".parquet"):
        df = pl.read_parquet(path)
        missing = [c for c in ("spectrum_id", "precursor_mz", "mz", "intensity") if c not in df.columns]
        if missing:
            raise InputError(f"query table lacks columns {missing}", file=str(path),
                             fix="pass a spectra.parquet from the pipeline")
        return df

    df, _report = read_query_spectra(path, cleaning=cleaning, default_ion_mode=default_ion_mode)
    return df


def cleaned(spectra: pl.DataFrame, cleaning: dict) -> pl.DataFrame:
    """The spectra with peaks cleaned as the library's (``ms2study.core.cleaning.clean_peaks``); rows kept in order."""
    mzs, ints = [], []
    for mz, inten, prec in zip(spectra["mz"].to_list(), spectra["intensity"].to_list(),
                               spectra["precursor_mz"].cast(pl.Float64).to_list()):
        if mz is None or inten is None or prec is None or not np.isfinite(prec) or prec <= 0:
            mzs.append(None)
            ints.append(None)
            continue
        cm, ci = clean_peaks(np.asarray(mz, np.float64), np.asarray(inten, np.float64), prec, **cleaning)
        mzs.append(cm.tolist())
        ints.append(np.asarray(ci, np.float32).tolist())
    return spectra.with_columns(pl.Series("mz", mzs, dtype=pl.List(pl.Float64)),
                                pl.Series("intensity", ints, dtype=pl.List(pl.Float32)))


def default_index_root() -> Path:
    """Where ``ms2study score`` caches library indexes: ``$XDG_CACHE_HOME/ms2study/library`` (``~/.cache`` when the
    variable is unset), the XDG base-directory convention for caches, never the current directory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ms2study" / "library"


def ion_mode_mismatch(spectra: pl.DataFrame, library_modes: np.ndarray, default: str) -> str | None:
    """A sentence saying that no library spectrum has the ion mode of any query (so no query can have a
    candidate: each is searched in its own mode), with the counts and the fix; None when the modes overlap or a
    library spectrum's mode is unknown (it is searched in both). ``library_modes``: the index's codes (1 positive,
    -1 negative, 0 unknown); a query without a stated mode takes ``default`` (annotate ``ion_mode``)."""
    names = {1: "positive", -1: "negative", 0: "unknown"}
    library = {names[int(c)] for c in library_modes}
    if not library or "unknown" in library:
        return None
    stated = spectra["ion_mode"].to_list() if "ion_mode" in spectra.columns else [None] * spectra.height
    queries: dict[str, int] = {}
    for mode in stated:
        key = (mode or default).lower()
        queries[key] = queries.get(key, 0) + 1
    if not queries or set(queries) & library:
        return None
    counts = {m: int(np.sum(library_modes == c)) for c, m in names.items() if m in library}
    return (f"no library spectrum has the queries' ion mode (queries: "
            f"{', '.join(f'{n} {m}' for m, n in queries.items())}; library: "
            f"{', '.join(f'{n} {m}' for m, n in counts.items())}), so no query has a candidate -> check the ion "
            "mode of the library and the queries (IONMODE / CHARGE sign / adduct), or use a library of the queries' "
            "ion mode")


def score_files(
    queries: str | Path,
    libraries: list[str | Path],
    params: dict | None = None,
    index_root: str | Path | None = None,
    library_params: dict | None = None,
    embed_params: dict | None = None,
) -> pl.DataFrame:
    """Index the libraries (cached), embed and annotate the queries; returns SCORE_COLUMNS first.

    ``params``: annotate parameters (``model`` names the encoder, as in the pipeline); ``embed_params``: embed
    stage parameters (device, batch size, precision). With ``embed_params`` None the queries are still embedded
    with ``params['model']``; pass ``{"model": None}`` in params to score spectra only.
    """
    # queries from a file may come from many runs and instruments: no run's precursor offset is removed unless asked
    # (annotate: recalibrate_precursors in --params; the pipeline's annotate stage searches one run at a time)
    p = engine.merge_params({"recalibrate_precursors": False, **(params or {})})
    libraries = [Path(x) for x in libraries]
    if len(libraries) == 1 and (libraries[0] / "manifest.json").exists():
        index_dir = libraries[0]
    else:
        stem = "+".join(x.name.split(".")[0] for x in libraries)
        index_dir = Path(index_root or default_index_root()) / stem
        ensure_library_index(libraries, index_dir, library_params)
    # entropy-prepared peaks (and decoys) stored once in the cached index, as the pipeline's prepare-library rule
    # does: calibration and annotation then load them instead of each preparing the library again
    prepare_for_params(index_dir, p)
    index = load_library_index(index_dir)
    cleaning = p["cleaning"] if p["cleaning"] is not None else index.manifest.get("params", {}).get("cleaning", {})
    spectra = cleaned(read_query_file(queries, cleaning, p["ion_mode"]), cleaning)
    mismatch = ion_mode_mismatch(spectra, np.asarray(index.ion_mode), p["ion_mode"])
    if mismatch:
        log.warning("queries %s against library %s: %s", queries, index_dir, mismatch)
    embeddings = None
    if p["model"] is not None:
        eparams = {**(embed_params or {}), "model": p["model"]}
        inference.embed_library(index_dir, eparams)
        embeddings = inference.embed_spectra(spectra, eparams)
    cal = cached_calibration(index_dir, p) if p["confidence"] == "null_model" else None
    smallest = cal.smallest_p() if cal is not None else 0.0
    if cal is not None and smallest > float(p["fdr"]):
        log.warning("library %s: %s", index_dir, no_acceptance_text(smallest, cal.formula.n, float(p["fdr"])))
    elif cal is not None and cal.formula.n < SMALL_CALIBRATION:
        log.warning("library %s: %s", index_dir, small_library_text(cal.formula.n))
    # Peaks are cleaned above; cleaning twice would change nothing but costs time.
    ann = engine.annotate_spectra(spectra, index_dir, {**p, "cleaning": cleaning}, embeddings, cal)
    ann = ann.rename({"spectrum_id": "query_id"})
    # the query's own name beside its id (a fresh user's MSP queries were known only as "q_tof.msp:7")
    names = (spectra.select(pl.col("spectrum_id").alias("query_id"), pl.col("name").cast(pl.Utf8).alias("query_name"))
             if "name" in spectra.columns else spectra.select(pl.col("spectrum_id").alias("query_id"),
                                                              pl.lit(None, dtype=pl.Utf8).alias("query_name")))
    ann = ann.join(names.unique("query_id"), on="query_id", how="left", maintain_order="left")
    return ann.select(SCORE_COLUMNS + [c for c in ann.columns if c not in SCORE_COLUMNS])


def _cli_score(args: argparse.Namespace) -> int:
    params = load_params(args)
    # an option given on the command line wins; otherwise --params, then the annotate defaults
    for key, value in (("precursor_tolerance_ppm", args.ppm), ("top_k", args.top_k), ("mode", args.mode),
                       ("precursor_tolerance_da", args.da)):
        if value is not None:
            params[key] = value
    if args.no_embedding:
        params["model"] = None
    out = score_files(args.queries, args.library, params, index_root=args.index_root)
    write_parquet(out, args.out)
    top = out.filter(pl.col("rank") == 1)
    print(f"{args.out}: {out.height} hits for {out['query_id'].n_unique()} queries with a candidate; "
          f"{int(top['accepted'].sum())} accepted at the configured FDR "
          f"({int((top['msi_level'] == 2).sum())} at Schymanski level 2, "
          f"{int((top['msi_level'] == 3).sum())} at level 3)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    s = subparsers.add_parser("score", help="identify query spectra (MGF/MSP/JSON or spectra.parquet) against "
                                            "library files, as the pipeline does")
    s.add_argument("--queries", required=True, help="queries: .mgf/.msp/.json or a spectra.parquet")
    s.add_argument("--library", nargs="+", required=True, help="library file(s) (.mgf/.msp/.json) or one index folder")
    s.add_argument("--out", required=True, help="hits.parquet to write")
    s.add_argument("--ppm", type=float, default=None,
                   help=f"precursor window (ppm; default {engine.DEFAULT_PARAMS['precursor_tolerance_ppm']})")
    s.add_argument("--da", type=float, default=None, help="precursor window in Da (replaces --ppm)")
    s.add_argument("--top-k", type=int, default=None,
                   help=f"candidates kept per query (default {engine.DEFAULT_PARAMS['top_k']})")
    s.add_argument("--mode", choices=["identity", "analogue"], default=None,
                   help=f"identity or analogue search (default {engine.DEFAULT_PARAMS['mode']})")
    s.add_argument("--no-embedding", action="store_true", help="score with spectral similarities only")
    s.add_argument("--index-root", default=None,
                   help="where library indexes are cached (default: $XDG_CACHE_HOME/ms2study/library, ~/.cache/...)")
    add_params_argument(s)
    s.set_defaults(func=_cli_score)
