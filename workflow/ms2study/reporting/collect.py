"""What the report reads: ``ReportInputs`` names every file (the caller, e.g. the report rule, hands them over; no
path is derived here, so results left by an outcome or library no longer configured are never shown), and the
functions here read counts, annotations, the encoder's identity, calibration notes and the models' feature sets
from exactly those files.

Per-sample tables are given as one list per table kind, in the order of the sample sheet. A file that is named but
absent is a warning in the report, not an error. May import ``ms2study.core``, ``ms2study.io``,
``ms2study.modelling`` and ``reporting.html``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.cleaning import SCAN_NOTES_KEY
from ms2study.core.errors import InputError
from ms2study.modelling.featuresets import (binned_spectra_feature_set, embedding_feature_set,
                                             feature_matrix_feature_set, read_spectra_tables)
from ms2study.reporting.html import DOUBT, PROCESSING, QUALITY, Caution, esc

TABLES = ("features", "spectra", "embeddings", "annotations", "sample_embedding")


@dataclass(frozen=True)
class OutcomeFiles:
    """One configured outcome's model results: its ``summary.json`` and, for the ROC curves, its
    ``predictions.parquet`` (both written by ``ms2study models``)."""

    summary: Path
    predictions: Path | None = None


@dataclass(frozen=True)
class DifferentialFiles:
    """One configured outcome's differential table and its class enrichment table (``ms2study differential``)."""

    table: Path
    enrichment: Path | None = None


@dataclass(frozen=True)
class ReportInputs:
    """Every file the report reads.

    ``sheet``: the sample sheet (TSV). ``sample_tables``: for each kind in ``TABLES``, one path per sample in the
    order of the sheet (a kind left out counts as missing for every sample). ``feature_matrix``,
    ``identifications``: the study tables (None: not available). ``models`` and ``differential``: one entry per
    configured outcome. ``calibrations``: the library calibration JSON(s) (``ms2study calibrate-library``).
    ``encoder_info``: the JSON ``ms2study embed --info`` writes, when there is one. ``library_indexes``: the
    library index folder(s) (``results/library/{name}/``), for the library side of the mirror plots. ``qc``: the
    per-sample QC table (``results/study/qc.parquet``); ``chromatograms``: each sample's ``chromatogram.parquet``
    (rt_s, tic, bpc) in the order of the sheet; ``attribution``: the attribution table of each outcome,
    ``results/study/attribution/{outcome}.parquet``, matched to the differential results by the outcome's name (the
    file's stem); ``region_attribution``: the bag-of-chemistry model's region table of each outcome,
    ``results/study/attribution/chemical_space/{outcome}.parquet`` (matched the same way). ``corrected_matrix``:
    ``results/study/feature_matrix_corrected.parquet`` and ``correction``:
    ``results/study/correction.json``, the correct stage's outputs (the batch section; the maps of the models use
    the corrected matrix when the configuration's ``correct: use_corrected`` is true, the default).
    ``feature_links``: ``results/study/feature_links.parquet`` (the link stage), which with the spectra tables tells
    how many consensus features have MS/MS (None: not said).
    """

    sheet: Path
    sample_tables: Mapping[str, Sequence[Path]] = field(default_factory=dict)
    feature_matrix: Path | None = None
    identifications: Path | None = None
    models: Sequence[OutcomeFiles] = ()
    differential: Sequence[DifferentialFiles] = ()
    calibrations: Sequence[Path] = ()
    encoder_info: Path | None = None
    library_indexes: Sequence[Path] = ()
    qc: Path | None = None
    chromatograms: Sequence[Path] = ()
    attribution: Sequence[Path] = ()
    region_attribution: Sequence[Path] = ()
    corrected_matrix: Path | None = None
    correction: Path | None = None
    feature_links: Path | None = None

    def per_sample(self, sample_ids: list[str]) -> list[dict[str, Path | None]]:
        """For each sample (in ``sample_ids`` order) its table paths by kind (None: not given).

        Raises InputError for an unknown kind or a list whose length is not the number of samples.
        """
        unknown = sorted(set(self.sample_tables) - set(TABLES))
        if unknown:
            raise InputError(f"unknown per-sample table kind(s) {unknown}", fix=f"use {', '.join(TABLES)}")
        for kind, paths in self.sample_tables.items():
            if len(paths) != len(sample_ids):
                raise InputError(f"{len(paths)} {kind} table(s) for {len(sample_ids)} samples",
                                 fix="pass one table per sample of the sheet, in the order of the sheet")
        return [{t: (Path(self.sample_tables[t][i]) if t in self.sample_tables else None) for t in TABLES}
                for i in range(len(sample_ids))]


def _columns(path: Path) -> list[str]:
    return list(pl.read_parquet_schema(path).keys())


def _check_sample(found: list, path: Path, sample_id: str) -> None:
    """InputError when the table at ``path`` holds rows of another sample (per-sample lists out of order):
    ``found`` is its distinct sample ids."""
    other = sorted(str(s) for s in found if s is not None and str(s) != sample_id)
    if other:
        raise InputError(f"the table is given for sample {sample_id} but holds rows of {', '.join(other[:5])}",
                         file=str(path), fix="pass the per-sample tables in the order of the sample sheet")


def _one_scan(path: Path, exprs: dict[str, pl.Expr], sample_id: str) -> dict[str, Any]:
    """The aggregates ``exprs`` (name -> expression; those naming absent columns are left out) of the table at
    ``path`` in one pass, with its distinct sample ids checked (``_check_sample``): one read per table and sample,
    where a read per count made the report's per-sample loop dominate at hundreds of samples."""
    cols = set(pl.read_parquet_schema(path))
    wanted = {name: e for name, e in exprs.items() if set(e.meta.root_names()) <= cols}
    if "sample_id" in cols:
        wanted["_samples"] = pl.col("sample_id").drop_nulls().unique().implode()
    if not wanted:
        return {}
    row = pl.scan_parquet(path).select(**wanted).collect().row(0, named=True)
    _check_sample(row.pop("_samples", None) or [], path, sample_id)
    return row


def sample_stats(sample_id: str, paths: dict[str, Path | None], warnings: list[str]) -> dict[str, Any]:
    """Counts for the per-sample table, reading only the columns needed (embeddings can be large), one pass per
    table.

    ``paths`` maps each kind in ``TABLES`` to the sample's table (None or an absent file: a warning is appended to
    ``warnings`` and its counts are left out). Returns ``sample_id`` and, where the table is there: ``features``,
    ``ms2_scans``, ``mapped_spectra``, ``ion_modes``, ``precursor_corrected``, ``embedded``, ``model_ids``,
    ``model_trained``, ``annotated_spectra`` (rank-1 spectra), ``n_spectra_pooled`` and ``has_sample_embedding``.
    Raises InputError when a table holds another sample's rows.
    """
    stats: dict[str, Any] = {"sample_id": sample_id}
    present = {t: p for t, p in paths.items() if p is not None and p.exists()}
    missing = [t for t in TABLES if t not in present]
    if missing:
        warnings.append(f"sample <b>{esc(sample_id)}</b>: missing result table(s) {esc(', '.join(missing))}")
    if "features" in present:
        stats["features"] = _one_scan(present["features"], {"n": pl.len()}, sample_id)["n"]
    if "spectra" in present:
        row = _one_scan(present["spectra"], {
            "n": pl.len(), "mapped": pl.col("feature_id").is_not_null().sum(),
            "ion_modes": pl.col("ion_mode").drop_nulls().unique().sort().implode(),
            "corrected": pl.col("precursor_corrected").fill_null(False).sum()}, sample_id)
        stats["ms2_scans"], stats["mapped_spectra"] = int(row["n"]), int(row["mapped"])
        if "ion_modes" in row:
            stats["ion_modes"] = list(row["ion_modes"] or [])
        if "corrected" in row:
            stats["precursor_corrected"] = int(row["corrected"])
        notes = json.loads(pl.read_parquet_metadata(present["spectra"]).get(SCAN_NOTES_KEY) or "{}")
        if notes.get("unused_levels"):
            stats["unused_levels"] = {int(k): int(v) for k, v in notes["unused_levels"].items()}
        if notes.get("no_fragment_peaks") or notes.get("no_peaks"):
            stats["without_fragments"] = int(notes.get("no_fragment_peaks", 0)) + int(notes.get("no_peaks", 0))
    if "embeddings" in present:
        row = _one_scan(present["embeddings"], {
            "n": pl.len(), "null": pl.col("embedding").is_null().sum(),
            **{c: pl.col(c).drop_nulls().unique().implode() for c in ("model_id", "model_trained")}}, sample_id)
        stats["embedded"] = int(row["n"]) - int(row["null"])
        stats["model_ids"] = [str(v) for v in row.get("model_id") or []]
        stats["model_trained"] = [bool(v) for v in row.get("model_trained") or []]
    if "annotations" in present:
        stats["annotated_spectra"] = _one_scan(present["annotations"], {
            "n": pl.col("spectrum_id").filter(pl.col("rank") == 1).n_unique()}, sample_id)["n"]
    if "sample_embedding" in present:
        pooled = present["sample_embedding"]
        frame = pl.read_parquet(pooled)
        _check_sample(frame["sample_id"].drop_nulls().unique().to_list() if "sample_id" in frame.columns else [],
                      pooled, sample_id)
        row = frame.row(0, named=True) if frame.height else None
        stats["n_spectra_pooled"] = int(row["n_spectra"]) if row and row.get("n_spectra") is not None else 0
        stats["has_sample_embedding"] = bool(row and row.get("embedding") is not None)
    return stats


def calibration_warnings(paths: Sequence[Path], warnings: list[str], fdr: float | None = None) -> float | None:
    """Append what each library calibration (``ms2study calibrate-library`` JSON) says about its own reliability:
    a null measured on structures the encoder was trained on; fewer than SMALL_CALIBRATION wrong candidates measured
    (coarse q-values), or, where the smallest p-value a hit can get is above ``fdr``, that no name can be accepted.
    Both are quality warnings the Main findings name: a fresh user's 21-pesticide library left six right matches at
    q 0.17-0.22 with only a processing note saying why. Returns the largest such smallest p-value (the floor that
    keeps every name out), None when every library can reach ``fdr``."""
    floor = None
    from ms2study.identification.calibration import SMALL_CALIBRATION, no_acceptance_text
    from ms2study.identification.confidence import NullDistribution

    for path in sorted(Path(p) for p in paths):
        try:
            data = json.loads(path.read_text())
            stats = data.get("stats", {})
            null = NullDistribution.from_json(data["formula_null"]) if "formula_null" in data else None
        except (OSError, ValueError, KeyError, TypeError):
            warnings.append(f"the identification calibration {esc(path.name)} cannot be read: rerun the pipeline")
            continue
        if stats.get("queries_from") == "all structures" and (data.get("scoring") or {}).get("model_id"):
            warnings.append(Caution(
                f"the identification calibration of the library index <code>{esc(path.stem)}</code>: fewer than 200 "
                "library structures lie outside the encoder's training split, so the null was measured on structures "
                "the encoder has seen; q-values of hits carried by the embedding score may be optimistic", QUALITY,
                "identification q-values may be optimistic", ("identifications",)))
        n_wrong = int(stats.get("n_wrong_formula_candidates", 0))
        smallest = null.smallest_p() if null is not None and null.n else 1.0
        if fdr is not None and smallest > float(fdr):
            floor = max(smallest, floor or 0.0)
            warnings.append(Caution(
                f"the identification calibration of the library index <code>{esc(path.stem)}</code>: "
                f"{esc(no_acceptance_text(smallest, n_wrong, float(fdr)))}", QUALITY,
                "no name can be accepted with this library", ("identifications",)))
        elif n_wrong < SMALL_CALIBRATION:
            high = int((null.top >= 0.8).sum()) if null is not None else 0
            warnings.append(Caution(
                f"the identification calibration of the library index <code>{esc(path.stem)}</code>: only "
                f"{n_wrong} wrong candidates were measured ({high} of them scoring 0.8 or more against a spectrum of "
                "another compound): with a library this small the q-values are coarse, and a few look-alike wrong "
                "candidates keep right matches above the FDR (measured on a 21-pesticide library: 34 measured, six "
                "right matches at cosine 0.97-1.00 left at q 0.17-0.22; with 300 more MassBank records beside it all "
                "six were accepted). Add a broad reference library (e.g. MassBank) to <code>library:</code> beside "
                "your own", QUALITY, "small library: coarse q-values", ("identifications",)))
        for caveat in stats.get("caveats", []):
            warnings.append(Caution("the identification calibration of the library index "
                                    f"<code>{esc(path.stem)}</code>: {esc(caveat)}", PROCESSING))
    return floor


def library_summary(indexes: Sequence[Path], warnings: list[str]) -> str:
    """A paragraph per library index (its ``manifest.json``, ``ms2study index-library``): entries read, spectra
    indexed, and every entry skipped or altered with the reasons and the first identifiers (and names); an entry
    emptied by the cleaning is also a warning, ranked as a processing note, and one skipped as malformed a caution on
    the identifications (``DOUBT``: the user's record never entered any search). Empty string without indexes; an
    unreadable manifest is a warning."""
    parts = []
    for folder in sorted(Path(p) for p in indexes):
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            warnings.append(f"library index {esc(folder.name)}: its manifest.json cannot be read: rerun the pipeline")
            continue
        sources = ", ".join(esc(Path(str(s.get("path", ""))).name) for s in manifest.get("sources") or []
                            if isinstance(s, dict) and s.get("path"))
        index = f"library index <code>{esc(folder.name)}</code>" + (f" ({sources})" if sources else "")
        line = (f"The {index}: {int(manifest.get('n_entries', 0))} entries read, {int(manifest.get('n_spectra', 0))} "
                "spectra indexed.")
        lost = []
        for count, reasons, first, what in (
                ("n_skipped", "skipped_by_reason", "skipped_first", "skipped"),
                ("n_empty_after_cleaning", None, "empty_first", "left without peaks by the cleaning and dropped"),
                ("n_altered", "altered_by_reason", "altered_first", "read with changes")):
            n = int(manifest.get(count) or 0)
            if not n:
                continue
            why = ", ".join(f"{esc(k)}: {v}" for k, v in (manifest.get(reasons) or {}).items()) if reasons else ""
            names = ", ".join(esc(_entry_name(x)) for x in (manifest.get(first) or [])[:5])
            text = f"{n} entries {what}" + (f" ({why})" if why else "") + (f", first: {names}" if names else "")
            line += f" {text}."
            if what == "skipped":  # malformed records of the user's library: a compound among them goes unnamed or
                # its isomer takes its name (trial BI: sarcosine dropped over one 'n/a' peak line, named L-alanine)
                warnings.append(Caution(
                    f"{n} record(s) of the {index} could not be read and were never searched ({why}), first: "
                    f"{names}: a compound among them cannot be named, or is named as a compound of similar "
                    "spectrum that the library holds. Correct them (the index log names every one) and run again",
                    DOUBT, "library records unreadable", ("identifications",)))
            elif what != "read with changes":
                lost.append(text)
        for note in manifest.get("file_notes") or []:  # how a whole file was read (e.g. not UTF-8)
            if isinstance(note, dict) and note.get("note"):
                line += f" {esc(str(note.get('file', '')))}: {esc(str(note['note']))}."
        whole = int(manifest.get("n_whole_number_precursor") or 0)
        if whole:  # unit-resolution records: seldom candidates of an accurate query (a trial's Keio records)
            line += (f" {whole} spectra have a whole-number precursor m/z (unit resolution, e.g. "
                     f"{esc(', '.join(str(x) for x in (manifest.get('whole_number_precursor_first') or [])[:3]))}): "
                     "a query measured at accurate mass seldom falls within their precursor window, and a query "
                     "of whole-number precursor gets no q-value.")
        rounded = int(manifest.get("n_rounded_precursor") or 0)
        if rounded:  # 1-2 decimals without a formula and ion to give the exact m/z (library.adducts)
            line += (f" {rounded} spectra have a precursor m/z rounded to 1-2 decimals (e.g. "
                     f"{esc(', '.join(str(x) for x in (manifest.get('rounded_precursor_first') or [])[:3]))}): "
                     "a query measured at accurate mass seldom falls within their precursor window.")
        named = int(manifest.get("n_name_as_structure") or 0)
        if named:
            line += (f" {named} spectra have no InChIKey and no parsable SMILES: their names stand for their "
                     "structures.")
            warnings.append(Caution(
                f"{named} spectra of the {index} have no InChIKey and no parsable SMILES, so their names stand for "
                "their structures: synonyms count as different compounds, which raises the p-values of their "
                "matches, and their identifications have no InChIKey. Add InChIKeys or SMILES to the library",
                QUALITY, "library records without structures", ("identifications",)))
        if lost:  # records the cleaning removed before any search: a processing detail, not a doubt on a result
            warnings.append(Caution(f"library records dropped while building the {index}: " + "; ".join(lost)
                                    + " (the index log names every one)", PROCESSING))
        parts.append(f"<p>{line}</p>")
    return "".join(parts)


def _entry_name(issue: Any) -> str:
    """'ID (file, entry N: reason)' of one manifest issue record (``library.index``)."""
    if not isinstance(issue, dict):
        return str(issue)
    where = ", ".join(str(x) for x in (issue.get("file"), f"entry {issue['entry']}" if issue.get("entry") else None)
                      if x)
    reason = f": {issue['reason']}" if issue.get("reason") else ""
    name = f" '{issue['name']}'" if issue.get("name") else ""
    return f"{issue.get('identifier') or '(no identifier)'}{name} ({where}{reason})"


def library_ion_modes(indexes: Sequence[Path]) -> set[str] | None:
    """The polarities ("positive", "negative") a query can be searched in against the library indexes
    (``ion_mode.npy``: +1 / -1; a spectrum of unknown mode, 0, matches queries of either); None without an index or
    when one cannot be read."""
    modes: set[str] = set()
    if not indexes:
        return None
    for folder in indexes:
        try:
            values = np.load(Path(folder) / "ion_mode.npy")
        except (OSError, ValueError):
            return None
        modes |= ({"positive"} if (values >= 0).any() else set()) | ({"negative"} if (values <= 0).any() else set())
    return modes


def unmatched_library_files(stats: list[dict], indexes: Sequence[Path], warnings: list[str]) -> None:
    """A data-quality warning naming each library file (the index's ``metadata.parquet`` ``source_file``) whose
    records all state an ion mode that none of the study's MS/MS scans (``sample_stats``' ``ion_modes``) has: it
    could give no candidate, so no name rests on it (trial AJ: an in-house file of 76 negative-mode pesticides beside
    a positive-mode study; the names of its planted pesticides all came from the other file, and nothing said so).
    Nothing without scans' modes or a readable metadata table."""
    modes = {m for s in stats for m in s.get("ion_modes", [])}
    if not modes:
        return
    for folder in indexes:
        try:
            meta = pl.read_parquet(Path(folder) / "metadata.parquet", columns=["source_file", "ion_mode"])
        except (OSError, pl.exceptions.PolarsError):
            continue
        for (source,), group in meta.group_by("source_file", maintain_order=True):
            stated = set(group["ion_mode"].to_list())
            if None in stated or stated & modes:
                continue
            warnings.append(Caution(
                f"library file <b>{esc(Path(str(source)).name)}</b>: all {group.height} of its records are "
                f"{esc(', '.join(sorted(stated)))}-mode, and the study's MS/MS is {esc(', '.join(sorted(modes)))}: "
                "it could match nothing, so no identification rests on it (each scan is searched only against "
                "library spectra of its own polarity). Give it in a study of that polarity, or a "
                f"{esc('/'.join(sorted(modes)))}-mode export of it", QUALITY, "library file of another polarity",
                ("identifications",)))


# the label of scan_warnings' caution on MS/MS of a polarity the library lacks, after the mode ("positive")
UNSEARCHED_LABEL = "-mode MS/MS not searched"


def scan_warnings(stats: list[dict], warnings: list[str], library_modes: set[str] | None = None) -> None:
    """Append study-level notes on MS/MS scans (from ``sample_stats``): mixed polarities, precursors taken from the
    isolation window, and (with ``library_modes``, ``library_ion_modes``) runs whose MS/MS has a polarity the library
    holds no spectrum of: those spectra were never searched (a fresh user's negative-mode run against a positive-only
    library: only its annotate log said so); fragment scans of another MS level (MS3) and MS/MS scans without a
    fragment peak, from the spectra tables' metadata (trial AS: neither was said)."""
    modes = {m for s in stats for m in s.get("ion_modes", [])}
    if library_modes is not None:
        for mode in sorted(modes - library_modes):
            runs = [s["sample_id"] for s in stats if mode in s.get("ion_modes", [])]
            warnings.append(Caution(
                f"MS/MS scans of {mode} polarity ({len(runs)} run(s): {esc(', '.join(runs[:10]))}"
                f"{', ...' if len(runs) > 10 else ''}) were not searched: the library holds no {mode}-mode spectrum. "
                f"Add a {mode}-mode library to <code>library:</code> (it takes a list)", QUALITY,
                f"{mode}{UNSEARCHED_LABEL}", ("identifications",)))
    if len(modes) == 1:  # trial AW: the polarity was said nowhere but in the config
        warnings.append(Caution(f"every run's MS/MS is {next(iter(modes))}-mode, as the files state (searched against "
                                "library spectra of that polarity only)", PROCESSING))
    if len(modes) > 1:
        mixed = [s["sample_id"] for s in stats if len(s.get("ion_modes", [])) > 1]
        warnings.append(f"the study mixes polarities ({', '.join(sorted(modes))}"
                        + (f"; within one run: {esc(', '.join(mixed[:10]))}" if mixed else "")
                        + "): every MS/MS scan was searched only against library spectra of its own polarity")
    unused = [(s["sample_id"], s["unused_levels"]) for s in stats if s.get("unused_levels")]
    if unused:
        levels = sorted({lv for _, u in unused for lv in u})
        total = {lv: sum(u.get(lv, 0) for _, u in unused) for lv in levels}
        warnings.append(f"{len(unused)} run(s) ({esc(', '.join(r for r, _ in unused[:10]))}"
                        f"{', ...' if len(unused) > 10 else ''}) hold fragment scans of another MS level, not used: "
                        + ", ".join(f"{n} MS{lv} scans" for lv, n in total.items())
                        + " (only the level set by the spectra option <code>ms_level</code> is searched)")
    empty = [(s["sample_id"], s["without_fragments"], s.get("ms2_scans") or 0) for s in stats
             if s.get("without_fragments")]
    if empty:
        most = [r for r, n, total in empty if total and n >= total / 2]
        warnings.append(Caution(
            f"{sum(n for _, n, _ in empty)} MS/MS scans of {len(empty)} run(s) hold no fragment peak ("
            + esc(", ".join(f"{r} {n} of {total}" for r, n, total in empty[:10])) + (", ..." if len(empty) > 10 else "")
            + "): their peaks all lie at or above the precursor m/z minus <code>spectra: precursor_margin_da</code> "
            "(only the unfragmented precursor: a collision energy too low, or an MS/MS scan range starting near the "
            "precursor), or they hold no peak; they could not be searched or embedded"
            + (f". In {esc(', '.join(most[:10]))} that is half of the MS/MS or more: check the acquisition method"
               if most else ""), QUALITY if most else PROCESSING, "MS/MS without fragments", ("identifications",)))
    per_run = [(s["sample_id"], s.get("precursor_corrected", 0)) for s in stats if s.get("precursor_corrected", 0)]
    if per_run:
        runs = ", ".join(f"{esc(r)} {n}" for r, n in per_run[:10]) + (", ..." if len(per_run) > 10 else "")
        warnings.append(f"{sum(n for _, n in per_run)} MS/MS scans had a selected-ion m/z outside their own isolation "
                        f"window ({runs}; cause unknown, a converter fault is one known cause): the isolation target "
                        "was used as precursor m/z")


def encoder_info(stats: list[dict], info_path: Path | None = None) -> dict[str, Any]:
    """What encoder produced the embeddings: ``model_ids`` and ``trained`` (True, False or None: unknown) from the
    embeddings tables (``sample_stats``), plus ``sidecar``, the JSON at ``info_path`` (``ms2study embed --info``)
    when it is given and readable."""
    ids = sorted({m for s in stats for m in s.get("model_ids", [])})
    trained = {t for s in stats for t in s.get("model_trained", [])}
    info: dict[str, Any] = {"model_ids": ids, "trained": None if not trained else (trained == {True})}
    if info_path is not None and Path(info_path).exists():
        try:
            sidecar = json.loads(Path(info_path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            sidecar = None
        if sidecar is not None:
            info["sidecar"] = sidecar
            if info["trained"] is None and "trained" in sidecar:
                info["trained"] = bool(sidecar["trained"])
    if not info["trained"] and ids and any(m.startswith("untrained") for m in ids):
        info["trained"] = False
    return info


def read_annotations(paths: Sequence[Path | None]) -> pl.DataFrame:
    """The rank-1 hits of the given annotation tables stacked (absent files skipped; empty frame when none)."""
    present = [Path(p) for p in paths if p is not None and Path(p).exists()]
    if not present:
        return pl.DataFrame()
    cols = ["spectrum_id", "sample_id", "feature_id", "rank", "library_name", "library_inchikey", "cosine",
            "precursor_error_ppm", "matched_peaks", "library_id", "q_value", "accepted"]
    frames = [pl.read_parquet(p, columns=[c for c in cols if c in _columns(p)]).filter(pl.col("rank") == 1)
              for p in present]
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def read_table(path: Path | None) -> pl.DataFrame | None:
    """The Parquet table at ``path``, or None when no path is given or the file is absent."""
    return pl.read_parquet(path) if path is not None and Path(path).exists() else None


def map_feature_sets(sample_ids: list[str], tables: list[dict[str, Path | None]],
                     matrix: pl.DataFrame | None) -> dict[str, pl.DataFrame]:
    """The models' feature sets rebuilt for the maps, as ``ms2study models`` builds them: "embedding" (pooled
    sample embeddings), "features" (the feature matrix, when it has every sample) and "binned_spectra"; a set is
    left out when none of its tables is there."""
    def present(kind: str) -> list[Path]:
        return [t[kind] for t in tables if t[kind] is not None and t[kind].exists()]

    feature_sets: dict[str, pl.DataFrame] = {}
    emb_paths = present("sample_embedding")
    if emb_paths:
        frames = [pl.read_parquet(p, columns=["sample_id", "embedding"]) for p in emb_paths]
        feature_sets["embedding"] = embedding_feature_set(pl.concat(
            [f.with_columns(pl.col("embedding").cast(pl.List(pl.Float32))) for f in frames]))
    if matrix is not None and all(s in matrix.columns for s in sample_ids):
        feature_sets["features"] = feature_matrix_feature_set(matrix, sample_ids)
    spectra_paths = present("spectra")
    if spectra_paths:
        feature_sets["binned_spectra"] = binned_spectra_feature_set(read_spectra_tables(spectra_paths), sample_ids)
    return feature_sets


# the label of level2_warning's caution; identification_finding names it as why no name is at level 2
LEVEL2_UNASSESSED = "level 2 not assessed"


def level2_warning(path: Path | None, ident: pl.DataFrame | None, warnings: list[str]) -> None:
    """Append a caution when identifications.parquet's metadata (``structure_model.LEVEL2_METADATA_KEY``) says
    fewer of the study's features could be scored by the level-2 model than it needs, while names were accepted,
    none at level 2:
    every name is then level 3 whatever its spectra show, and the report must not give another reason (trial AW:
    Myclobutanil at cosine 0.999 was level 3 'because the structure evidence does not rule out an isomer'; the
    identify log said only 13 hits could be scored)."""
    from ms2study.identification.structure_model import LEVEL2_METADATA_KEY

    if path is None or not Path(path).exists() or ident is None or "accepted" not in ident.columns \
            or not ident["accepted"].fill_null(False).any():
        return
    if "msi_level" in ident.columns and (ident.filter(pl.col("accepted").fill_null(False))["msi_level"] == 2).any():
        return  # annotations of an older version carry their own level: the model was not what decided
    reach = json.loads(pl.read_parquet_metadata(path).get(LEVEL2_METADATA_KEY) or "{}")
    scorable, needed = reach.get("scorable"), reach.get("needed")
    # none scorable: the library has no level-2 model, and the fallback rule (wrong-structure null and isomer margin)
    # gave the levels (the calibration's note says so; trial AY's realistic study: "only 0 could be scored" was wrong)
    if scorable is None or needed is None or scorable >= needed or scorable == 0:
        return
    warnings.append(Caution(
        f"Schymanski level 2 was not assessed: the level-2 model estimates the share of right structures over the "
        f"study's identified features, and only {scorable} could be scored (it needs {needed}), so every accepted "
        "name is level 3 (this compound or an isomer) however well its spectra match. A larger study, or more of "
        "its features matched, allows level 2", QUALITY, LEVEL2_UNASSESSED, ("identifications",)))
