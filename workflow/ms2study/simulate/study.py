"""``ms2study simulate OUTDIR``: a deterministic synthetic LC-MS/MS (DDA, positive mode) study with known truth.

The study is built from the curated metabolites in ``resources/compounds.tsv`` (real structures with isomer sets).
Each compound gets a reversed-phase-like retention time (from its Crippen logP, spaced so that compounds within
20 ppm elute at least 30 s apart), an isotope pattern from its formula, a slightly tailed elution profile and a
log-normal abundance that varies between samples; in the cases one chemical class is raised. Every run adds
chemical background ions, electronic noise, m/z error and a smooth retention-time drift, and acquires MS2 spectra
data-dependently (top-N with dynamic exclusion, 1 Da isolation with co-isolation) from the in-silico spectra of
:mod:`ms2study.simulate.fragment`. The same seed and options give byte-identical files; sample ``k`` depends only
on the seed, ``k`` and its group (half of the samples are cases, assigned by a seeded shuffle that depends on the
number of samples, so changing the number of samples can regroup, and rewrite, any sample).
Outputs: ``mzml/*.mzML``, ``samples.tsv``, ``library.mgf``, ``ground_truth.tsv``, ``simulation.json``,
``config.yaml``.

That default (``--profile demo``) is kind on purpose: 270 compounds, one whole class tripled. ``--profile
realistic`` (or ``--realistic``) makes a study whose background looks like a biological run, so that a sparse effect
is as hard to find as in real data: the 270 curated compounds (the library) plus ``n_background_compounds`` (2,500)
derivatives of them made by 17 phase I/II biotransformations (hydroxylation, glucuronidation, sulfation, glycine
conjugation, ...; real masses, isotope patterns, classes), which are not in the library and whose MS/MS derives from
their parent's (shared and mass-shifted fragments, the labile group lost whole; ``derived_spectrum``). Abundances are
log-normal over 3+ decades; every compound varies between samples by a per-sample factor shared by all compounds, a
module shared by ~1/20 of them and its own heterogeneous term, and isotopes follow their compound; the planted
effect changes ``n_changed`` (5-30) compounds of one class (``effect_set: class``) or of a class and its derivatives
(``pathway``), by ``fold_change`` (1.5-4), ``effect_direction`` up, down or mixed. ``simulate_features`` builds the
same study from its truth without mzML (measured heights, detection, DDA, MS/MS), for sweeps.

Batch acquisition (either profile; :mod:`ms2study.simulate.batch`): ``--batches N`` spreads the samples over N
batches in a randomised injection order, ``--qc-every K`` adds a pooled QC (the mean of the samples' abundances)
at each batch's start and after every K samples, ``--blanks B`` adds B solvent blanks per batch (first at its start,
second at its end, ...), and any of them turns on the instrument response: per batch an intensity offset
(exp(N(0, ``batch_offset_log_sd`` 0.3))) and a smooth monotone drift with injection order down to
U(``drift_end`` 0.6-0.75) at the batch's end, ``drift_curvature`` shaping it, each compound with its own
amplitude; plus ``n_contaminants`` (30) eluting contaminant ions in blanks and every run at a similar level (the
constant chemical background stays as it is). ``--adducts`` adds [M+Na]+ (ratio ``na_ratio`` 0.1-0.5 to [M+H]+),
[M+NH4]+ for a share ``nh4_fraction`` and an in-source fragment for a share ``in_source_fraction``, co-eluting and
following their compound. The same keys (``batches``, ``qc_every``, ``blanks``, ``adducts``, and the settings
named) are accepted in ``--params``; a flag wins over its key. samples.tsv is then in injection order with
``sample_type`` (sample | qc | blank), ``injection_order`` and ``batch``, QCs and blanks with empty group and age;
ground_truth.tsv has a row per run and compound with ``abundance`` (as acquired, after offset and drift),
``abundance_undrifted``, ``drift_factor``, ``sample_type``, ``injection_order``, ``batch``; batch_truth.json,
contaminants.tsv (contaminant_id, mz, rt_s, level, fwhm_s) and adduct_truth.tsv (compound_id, ion, mz, rt_s, ratio)
hold the rest. Without these options a study is byte-identical to one made before they existed.

Realistic parameters and their sources. "QC runs": the two Q Exactive injections of a pooled QC in
../shared/data/mzml (ESI+, DDA, 60 s excerpts), measured by ``benchmarks/biology.py --measure-real`` (which also
measures a simulated run the same way; both are in ``benchmarks/measured/biology.json``); "tables": the outcome
tables in ../shared/data/outcomes.

=========================== ================ =====================================================================
parameter                   realistic        source (real value) -> simulated run, measured the same way
=========================== ================ =====================================================================
median_abundance            25,000           QC runs: detected feature height median 10^4.51 -> 10^4.55
abundance_log_sd            1.7 (ln)         QC runs: sd of ln height 1.43, of ln intensity 1.64 (detected, so
                                             truncated); 1-99 %: 10^3.83-10^6.76 -> 10^3.61-10^6.03
biological_log_sd           0.45 median      tables: per-feature sd of ln abundance, median 0.38 (plant, MTBLS2),
biological_log_sd_spread    0.4              0.78 (human urine, sacurine), 1.22 (urine, ST000291, unnormalised);
module_log_sd, n_modules    0.3, 20          here the total is ~0.6 (between controlled and free-living), with
sample_factor_log_sd        0.2              tables: per-sample factor sd 0.09 / 0.26 / 0.52; PC1 15-36 % of
                                             variance, median abs correlation 0.13-0.31
technical_log_sd            0.07             QC runs: the two injections, per-injection sd of ln height 0.067
fwhm_s                      2.0-4.5          QC runs (MZmine list): FWHM 2.1-3.8 s (10-90 %)
ms1/ms2_scan_time_s         0.25 / 0.075     QC runs: 128 MS1 + 385 MS2 scans per min -> 197 + 145 (fewer precursors
top_n, dda_min_intensity    5, 20,000        above the trigger: our run is ~10x less intense than the pooled QC)
ms2_gain, ms2_noise_level   0.3, 1,200       QC runs: MS2 peaks 12 / 22 / 52 (5 / 50 / 95 %) -> 8 / 15 / 36 (the
                                             floor is scaled to our weaker precursors to keep the peak counts)
electronic_noise_*          2,500, 800/scan  QC runs: smallest MS1 centroid ~2,800-4,000, ~1,150 centroids per scan
resolution_ppm              19.5             QC run 04: 0.1 % quantile of neighbouring MS1 centroid spacings (what
                                             the Orbitrap resolves; ``simulate.spikein_background.resolution_ppm``):
                                             co-eluting ions closer than this are written as one centroid, as the
                                             instrument reports them (demo: 0, every ion its own centroid)
coisolate_isotopes          true             QC runs: 19-21 % of MS2 with precursor purity < 0.8 -> 11 %
detection_limit             4,000            simulate_features only: the detect stage on the mzML simulation found
                                             49 % of compounds at apex 10^3.5-3.75 and 90 % at 10^4-4.25
ms2_coverage                0.7              simulate_features only: 56-75 % of compounds above the DDA threshold
                                             were fragmented in the mzML simulation
chimeric_fraction, _purity  0.2, 0.5-0.8     simulate_features only: QC runs' purity (< 0.8 in 20 %, < 0.5 in 1 %)
=========================== ================ =====================================================================

A 16-sample realistic study simulates in about a minute on 2 cores (compounds ~20 s once, ~2-4 s per run).
"""

# This docstring is part of the ``simulate --help`` text (``command`` registers the subcommand). This module writes
# a study (``simulate_study``) and builds the same study's features from its truth (``simulate_features``). The
# pieces live in the other simulate modules: ``params`` (profiles, random streams), ``compounds`` (curated
# compounds), ``derivatives`` (realistic background compounds), ``design`` (sample sheet, planted effect,
# abundances), ``batch`` (injection order, QCs, blanks, drift, contaminants, adducts), ``mzml`` (one run and its
# mzML), ``ions`` (precursor ions), ``fragment`` (in-silico MS/MS) and ``outdir`` (the study folder, moved into
# place when complete). May import ``ms2study.core`` and those.

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.core.atomic import atomic_path, write_text
from ms2study.core.cleaning import clean_peaks
from ms2study.core.errors import InputError
from ms2study.simulate import batch
from ms2study.simulate.compounds import Compound, build_compounds, load_compounds
from ms2study.simulate.derivatives import realistic_compounds
from ms2study.simulate.design import design_realistic, design_study
from ms2study.simulate.mzml import chemical_background, ms2_detection, simulate_run, write_mzml
from ms2study.simulate.outdir import check_outdir, study_folder
from ms2study.simulate.params import BATCH_PARAMS, batch_mode, merge_params, stream
from ms2study.simulate.spikein_truth import with_realised_fold

log = logging.getLogger(__name__)


CONFIG_YAML = """library: library.mgf
models:
  outcomes:
    - {column: group, type: binary, positive_class: case}
    - {column: age, type: continuous}
"""


def _library_mgf(compounds: list[Compound]) -> str:
    """The compounds' reference spectra as MGF text (intensities x 1000), the study's ``library.mgf``."""
    blocks = []
    for c in compounds:
        lines = [
            "BEGIN IONS", f"TITLE={c.name}", f"PEPMASS={c.mz:.6f}", "CHARGE=1+", "IONMODE=positive",
            f"ADDUCT={c.adduct}", f"NAME={c.name}", f"FORMULA={c.formula}", f"SMILES={c.smiles}",
            f"INCHIKEY={c.inchikey}", f"COMPOUND_CLASS={c.chemical_class}", f"SPECTRUM_ID=SIM{c.compound_id}",
        ]
        lines += [f"{m:.6f} {i * 1000.0:.2f}" for m, i in zip(c.spectrum_mz, c.spectrum_intensity, strict=True)]
        lines.append("END IONS")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def simulate_study(outdir: Path, n_samples: int = 12, seed: int = 0, params: dict | None = None,
                   profile: str = "demo", overwrite: bool = False) -> dict:
    """Write a synthetic study into ``outdir`` and return a summary (see the module docstring for the files).

    ``profile``: ``demo`` (the curated compounds, one class raised in cases; unchanged, byte-identical per seed) or
    ``realistic`` (thousands of background compounds, measured intensity and variation, sparse effect; see the
    module docstring). The study is built beside ``outdir`` and moved into place at the end
    (:func:`ms2study.simulate.outdir.study_folder`); an ``outdir`` holding a study is refused unless ``overwrite``.
    Raises InputError for fewer than 2 samples, a negative seed, bad parameters or an ``outdir`` that cannot take
    the study; then nothing is written."""
    if n_samples < 2:
        raise InputError("a study needs at least 2 samples", fix="pass --samples 2 or more")
    if seed < 0:
        raise InputError(f"the seed is {seed}", fix="pass --seed 0 or more")
    p = merge_params(params, profile)
    check_outdir(outdir, overwrite)  # before the compounds are built (~20 s for the realistic profile)
    with study_folder(outdir, overwrite) as folder:
        summary = _write_study(folder, n_samples, seed, p, profile)
    return {"outdir": str(outdir), **summary}


def _with_planted_fold(truth: pl.DataFrame, compounds: list, design: dict, p: dict) -> pl.DataFrame:
    """``truth`` (ground_truth.tsv's rows) with the planted effect's columns appended, as the spike-in truth has
    them (appended, so the columns before stay byte for byte those of earlier studies): the demo profile adds
    ``changed`` (the compound is of the planted class) and ``log_fold`` (ln of the planted fold, per compound), both
    profiles add ``fold`` (exp ``log_fold``: cases over controls as planted; in the demo profile each case draws
    its own effect around it, sd ``fold_change_log_sd``) and ``realised_fold`` (the geometric mean of the cases'
    abundance over the controls', runs without the compound
    left out; :func:`ms2study.simulate.spikein_truth.with_realised_fold`). QCs and blanks count in neither group."""
    if "log_fold" not in truth.columns:  # the demo profile: the planted class raised by fold_change
        planted = design["planted_class"]
        ids = [c.compound_id for c in compounds if planted is not None and c.chemical_class == planted]
        truth = truth.with_columns(changed=pl.col("compound_id").is_in(ids)).with_columns(
            log_fold=pl.when(pl.col("changed")).then(float(np.log(p["fold_change"]))).otherwise(0.0))
    groups = {row["sample_id"]: row["group"] for row in design["samples"]}
    truth = truth.with_columns(fold=pl.col("log_fold").exp(),
                               group=pl.col("sample_id").replace_strict(groups, default=None, return_dtype=pl.Utf8))
    return with_realised_fold(truth).drop("group")


def _write_study(outdir: Path, n_samples: int, seed: int, p: dict, profile: str) -> dict:
    """The body of ``simulate_study``: write the study into the (new, empty) folder ``outdir``; the summary."""
    realistic = profile == "realistic"
    if realistic:
        compounds = realistic_compounds(seed, p)
        design = design_realistic(compounds, n_samples, seed, p)
    else:
        compounds = build_compounds(load_compounds(), p)
        design = design_study(compounds, n_samples, seed, p)
    changed = set(design.get("changed", np.empty(0)).tolist())
    background = chemical_background(seed, p)
    noise = p["electronic_noise_level"]
    acq = batch.acquire(compounds, design, seed, p)  # without batch options: the samples in sheet order, as before
    batched = batch_mode(p)
    truth_rows = []
    n_ms2_total = 0
    runs = {}
    for r, run in enumerate(acq.runs):
        s = run["design_index"]
        exp, truth = simulate_run(compounds, acq.abundance[r], seed, -1 if s is None else s, p, background,
                                  acq.extra(r), batch.run_stream(run, seed))
        write_mzml(exp, outdir / run["file"])
        n_ms2 = sum(1 for spec in exp if spec.getMSLevel() == 2)
        n_ms2_total += n_ms2
        runs[run["sample_id"]] = {"n_spectra": exp.getNrSpectra(), "n_ms2": n_ms2,
                                  "calibration_ppm": truth["calibration_ppm"], **truth["drift"],
                                  **({k: run[k] for k in ("sample_type", "injection_order", "batch")}
                                     if batched else {})}
        for i, c in enumerate(compounds):
            height = float(acq.abundance[r, i])
            present = bool(design["present"][s, i]) if s is not None else bool(acq.undrifted[r, i] > 0)
            truth_rows.append({
                "sample_id": run["sample_id"], "compound_id": c.compound_id, "name": c.name,
                "inchikey": c.inchikey, "chemical_class": c.chemical_class, "mz": c.mz,
                "rt_s": float(truth["apex_rt"][i]), "abundance": height,
                "present": present, "above_noise": bool(height >= 10.0 * noise),
                "in_library": c.in_library, "adduct": c.adduct, "formula": c.formula,
                "n_ms2": int(truth["ms2_count"][i]),
                **({"changed": i in changed, "log_fold": float(design["log_fold"][i]), "parent": c.parent}
                   if realistic else {}),
                **({"sample_type": run["sample_type"], "injection_order": run["injection_order"],
                    "batch": run["batch"], "abundance_undrifted": float(acq.undrifted[r, i]),
                    "drift_factor": float(acq.factor[r, i])} if batched else {}),
            })
        log.info("simulated %s: %d spectra (%d MS2)", run["sample_id"], exp.getNrSpectra(), n_ms2)
    sheet = pl.DataFrame(batch.sheet_rows(acq, design["samples"]) if batched else design["samples"],
                         infer_schema_length=None)
    with atomic_path(outdir / "samples.tsv") as tmp:
        sheet.write_csv(tmp, separator="\t")
    truth_df = _with_planted_fold(pl.DataFrame(truth_rows, infer_schema_length=None), compounds, design, p)
    with atomic_path(outdir / "ground_truth.tsv") as tmp:
        truth_df.write_csv(tmp, separator="\t", float_precision=6)
    write_text(_library_mgf([c for c in compounds if c.in_library]), outdir / "library.mgf")
    write_text(CONFIG_YAML, outdir / "config.yaml")
    batch.write_truth(outdir, compounds, acq)
    summary = {
        "seed": seed,
        "n_samples": n_samples,
        "n_compounds": len(compounds),
        "planted_class": design["planted_class"],
        "fold_change": p["fold_change"] if design["planted_class"] else None,  # none planted: null (trial P)
        "cases": [r["sample_id"] for r in design["samples"] if r["group"] == "case"],
        "age_compounds": design["age_compounds"],
        "electronic_noise_level": noise,
        "above_noise_threshold": 10.0 * noise,
        "ms2_noise_level": p["ms2_noise_level"],
        "n_background_ions": p["n_background_ions"],
        "n_ms2_spectra": n_ms2_total,
        "runs": runs,
        "parameters": _public_params(p),
    }
    if batched or p["adducts"]:
        summary["acquisition"] = batch.summary(acq, p)
    if realistic:
        summary.update(profile=profile, n_background_compounds=int(p["n_background_compounds"]),
                       effect_set=p["effect_set"], effect_direction=p["effect_direction"] if changed else None,
                       changed_compounds=[compounds[i].compound_id for i in sorted(changed)])
    write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", outdir / "simulation.json")
    # the age compounds' names for the terminal summary only: simulation.json stays as it was (the demo is pinned)
    return {**{k: v for k, v in summary.items() if k not in ("parameters", "runs")},
            "age_compound_names": design["age_compound_names"]}


def _public_params(p: dict) -> dict:
    """``p`` as the summary records it: without the batch keys when none of them is in use, and without
    ``resolution_ppm`` when it is 0 (so a default study's simulation.json is that of the simulator before batch
    acquisition and the resolution model existed)."""
    if not p.get("resolution_ppm"):
        p = {k: v for k, v in p.items() if k != "resolution_ppm"}
    if batch_mode(p) or p["adducts"]:
        return p
    return {k: v for k, v in p.items() if k not in BATCH_PARAMS}


# ---------------------------------------------------------------------------------------------------------------
# The same study without mzML: features known from the truth (for sweeps that cannot afford the pipeline)


@dataclass
class KnownFeatures:
    """A realistic study as the pipeline's per-sample stages would see it, built from the simulation's truth.

    ``samples``: the sample sheet (sample_id, file, group, age; with batch options every run in injection order,
    QCs and blanks with empty group and age, plus sample_type, injection_order, batch). ``features``: one row per
    compound in feature order (feature_id ``F{j}``, compound_id, name, chemical_class, mz, rt_s, in_library,
    changed, log_fold); with batch options or ``adducts`` then one row per extra ion (its compound's identity,
    ``F{n_compounds + k}``) and per contaminant (compound_id ``CONT01``.., chemical_class "contaminant"), and a
    column ``ion`` ("[M+H]+" or "[M]+" for a compound, "[M+Na]+", "[M+NH4]+", "in-source", "contaminant").
    ``intensity``: runs x features apex heights as measured (technical noise applied), NaN where the feature
    is not detected. ``spectra``: the MS/MS acquired, one row per (run, fragmented compound feature) in the layout
    of ``tables.SPECTRA`` (spectrum_id, sample_id, feature_id, precursor_mz, precursor_intensity, mz, intensity)
    plus ``spectrum_key``: rows with equal keys hold identical peaks (the same feature fragmented at the same
    precursor-intensity level), so an encoder needs to embed each key once. ``summary``: the design.
    ``abundance`` and ``abundance_undrifted``: runs x features, the true apex heights as acquired (after batch
    offset and drift, before technical noise and detection) and before the offset and drift. ``batch_truth``:
    the acquisition's truth (``batch_truth.json``'s content) or None without batch options.
    """

    samples: pl.DataFrame
    features: pl.DataFrame
    intensity: np.ndarray
    spectra: pl.DataFrame
    summary: dict
    abundance: np.ndarray | None = None
    abundance_undrifted: np.ndarray | None = None
    batch_truth: dict | None = None

    def features_table(self, sample_id: str) -> pl.DataFrame:
        """The detected features of one sample as the detect stage writes them (feature_id, sample_id, mz, rt_s,
        intensity); raises KeyError for an unknown sample."""
        s = self.samples["sample_id"].to_list().index(sample_id)
        detected = np.isfinite(self.intensity[s])
        return pl.DataFrame({
            "feature_id": self.features["feature_id"].filter(pl.Series(detected)),
            "sample_id": [sample_id] * int(detected.sum()),
            "mz": self.features["mz"].filter(pl.Series(detected)),
            "rt_s": self.features["rt_s"].filter(pl.Series(detected)),
            "intensity": self.intensity[s, detected],
        })


def simulate_features(n_samples: int, seed: int = 0, params: dict | None = None) -> KnownFeatures:
    """A realistic-profile study built from its truth, without writing or reading mzML.

    Same compounds, design and planted effect as ``simulate_study(..., profile="realistic")`` with the same seed
    and params; then, instead of simulating scans: a feature's measured height is its true apex height times
    exp(``technical_log_sd`` x N(0, 1)) and it is detected when that is at least ``detection_limit``; a feature is
    fragmented when its height reaches ``dda_min_intensity``, with probability ``ms2_coverage`` (top-N competition
    and exclusion); the precursor intensity at the trigger is the height times U(0.3, 1); the spectrum is the
    compound's fragments scaled by ``ms2_gain`` x precursor intensity, chimeric with probability
    ``chimeric_fraction`` (a co-eluting compound's fragments mixed in at precursor purity U(``chimeric_purity``)),
    then :func:`ms2_detection` (noise, centroid floor: weak precursors give few peaks). Precursor intensities are
    binned to 0.5 log10 units for the spectrum (``spectrum_key``), so identical keys share one spectrum. The
    detection limit and coverage were measured on the mzML simulation run through the detect stage (module
    docstring). Cost: ~20 s of compound building (cached per process), then well under a second per sample.
    The batch keys (``batches``, ``qc_every``, ``blanks``, ``adducts`` and the drift, contaminant and adduct
    settings; :mod:`ms2study.simulate.batch`) act as in ``simulate_study``: runs in injection order incl. QCs
    and blanks, heights after batch offset and drift, adduct and contaminant features (never fragmented here);
    a study sample's noise draws are those of the same study without them. Raises InputError for fewer than 2
    samples or bad parameters.
    """
    if n_samples < 2:
        raise InputError("a study needs at least 2 samples", fix="pass 2 or more samples")
    p = merge_params(params, "realistic")
    compounds = realistic_compounds(seed, p)
    design = design_realistic(compounds, n_samples, seed, p)
    n_c = len(compounds)
    acq = batch.acquire(compounds, design, seed, p)
    rt = np.array([c.rt_s for c in compounds])
    mz = np.array([c.mz for c in compounds])
    measured = np.full((len(acq.runs), n_c), np.nan)
    rows: dict[str, list] = {k: [] for k in ("spectrum_id", "sample_id", "feature_id", "precursor_mz",
                                             "precursor_intensity", "mz", "intensity", "spectrum_key")}
    cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for s, sample in enumerate(acq.runs):
        if sample["design_index"] is not None:
            rs = stream(seed, 13, sample["design_index"])
        else:
            rs = stream(seed, 26 if sample["sample_type"] == "qc" else 27, sample["number"])
        height = acq.abundance[s] * np.exp(p["technical_log_sd"] * rs.standard_normal(n_c))
        detected = height >= p["detection_limit"]
        measured[s, detected] = height[detected]
        fragmented = (height >= p["dda_min_intensity"]) & (rs.random(n_c) < p["ms2_coverage"])
        trigger = height * rs.uniform(0.3, 1.0, n_c)
        for j in np.flatnonzero(fragmented):
            level = int(np.floor(2.0 * np.log10(max(trigger[j], p["dda_min_intensity"]))))
            if (j, level) not in cache:
                cache[(j, level)] = _known_spectrum(compounds, j, level, rt, seed, p)
            peaks_mz, peaks_int = cache[(j, level)]
            rows["spectrum_id"].append(f"{sample['sample_id']}:F{j}")
            rows["sample_id"].append(sample["sample_id"])
            rows["feature_id"].append(f"F{j}")
            rows["precursor_mz"].append(float(mz[j]))
            rows["precursor_intensity"].append(float(trigger[j]))
            rows["mz"].append(peaks_mz)
            rows["intensity"].append(peaks_int)
            rows["spectrum_key"].append(f"F{j}@{level}")
    changed = set(design["changed"].tolist())
    features = pl.DataFrame({
        "feature_id": [f"F{j}" for j in range(n_c)], "compound_id": [c.compound_id for c in compounds],
        "name": [c.name for c in compounds], "chemical_class": [c.chemical_class for c in compounds],
        "mz": mz, "rt_s": rt, "in_library": [c.in_library for c in compounds],
        "changed": [j in changed for j in range(n_c)], "log_fold": design["log_fold"],
    })
    spectra = pl.DataFrame(rows, schema={
        "spectrum_id": pl.Utf8, "sample_id": pl.Utf8, "feature_id": pl.Utf8, "precursor_mz": pl.Float64,
        "precursor_intensity": pl.Float64, "mz": pl.List(pl.Float64), "intensity": pl.List(pl.Float32),
        "spectrum_key": pl.Utf8})
    summary = {"seed": seed, "n_samples": n_samples, "n_features": n_c, "planted_class": design["planted_class"],
               "changed_compounds": [compounds[j].compound_id for j in sorted(changed)],
               "n_cases": sum(r["group"] == "case" for r in design["samples"]), "parameters": _public_params(p)}
    if not (batch_mode(p) or p["adducts"]):
        return KnownFeatures(pl.DataFrame(design["samples"]), features, measured, spectra, summary,
                             acq.abundance, acq.undrifted)
    features, measured, true, undrifted = _extra_features(compounds, acq, features, measured, seed, p)
    summary.update(n_features=features.height, acquisition=batch.summary(acq, p))
    sheet = pl.DataFrame(batch.sheet_rows(acq, design["samples"]) if batch_mode(p) else design["samples"],
                         infer_schema_length=None)
    return KnownFeatures(sheet, features, measured, spectra, summary, true, undrifted,
                         acq.batch_truth() if acq.model is not None else None)


def _extra_features(compounds: list[Compound], acq: batch.Acquisition, features: pl.DataFrame, measured: np.ndarray,
                    seed: int, p: dict) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """``simulate_features``' table, measured heights, true heights and undrifted heights extended by the adduct
    ions and contaminants of ``acq``: true heights are ratio x the compound's (contaminants: their run level),
    measured ones carry technical noise from the stream (seed, 28, injection order) and the detection limit."""
    n_c, ions, cont = len(compounds), acq.ions, acq.contaminants
    n_cont = 0 if cont is None else len(cont["mz"])
    owner = np.array([e["compound"] for e in ions], dtype=np.int64)
    ratio = np.array([e["ratio"] for e in ions])
    true = np.hstack([acq.abundance, acq.abundance[:, owner] * ratio, acq.contaminant_height])
    undrifted = np.hstack([acq.undrifted, acq.undrifted[:, owner] * ratio, acq.contaminant_undrifted])
    extra = true[:, n_c:].copy()
    for r, run in enumerate(acq.runs):
        extra[r] *= np.exp(p["technical_log_sd"] * stream(seed, 28, run["injection_order"])
                           .standard_normal(extra.shape[1]))
    extra[extra < p["detection_limit"]] = np.nan
    base = features.to_dict(as_series=False)
    rows = {k: list(v) for k, v in base.items()}
    rows["ion"] = [c.adduct for c in compounds]
    for k, e in enumerate(ions):
        j = e["compound"]
        for key in ("compound_id", "name", "chemical_class", "rt_s", "in_library", "changed", "log_fold"):
            rows[key].append(base[key][j])
        rows["feature_id"].append(f"F{n_c + k}")
        rows["mz"].append(float(e["mz"]))
        rows["ion"].append(e["ion"])
    for k in range(n_cont):
        values = {"feature_id": f"F{n_c + len(ions) + k}", "compound_id": f"CONT{k + 1:02d}",
                  "name": f"contaminant {k + 1}", "chemical_class": "contaminant", "mz": float(cont["mz"][k]),
                  "rt_s": float(cont["rt_s"][k]), "in_library": False, "changed": False, "log_fold": 0.0,
                  "ion": "contaminant"}
        for key, value in values.items():
            rows[key].append(value)
    table = pl.DataFrame(rows, schema={**features.schema, "ion": pl.Utf8})
    return table, np.hstack([measured, extra]), true, undrifted


def _known_spectrum(compounds: list[Compound], j: int, level: int, rt: np.ndarray, seed: int,
                    p: dict) -> tuple[np.ndarray, np.ndarray]:
    """The spectrum of compound ``j`` fragmented at precursor intensity 10^(level / 2) (see simulate_features)."""
    rs = stream(seed, 14, j, level)
    c = compounds[j]
    precursor = 10.0 ** ((level + 0.5) / 2.0)
    frag_mz = [c.spectrum_mz]
    frag_int = [precursor * p["ms2_gain"] * c.spectrum_intensity.astype(np.float64)]
    if rs.random() < p["chimeric_fraction"]:
        co_eluting = np.flatnonzero((np.abs(rt - rt[j]) <= 5.0) & (np.arange(len(rt)) != j))
        if co_eluting.size:
            other = compounds[int(rs.choice(co_eluting))]
            purity = rs.uniform(*p["chimeric_purity"])
            frag_mz.append(other.spectrum_mz)
            frag_int.append(precursor * (1.0 - purity) / purity * p["ms2_gain"]
                            * other.spectrum_intensity.astype(np.float64))
    peaks_mz, peaks_int = ms2_detection(np.concatenate(frag_mz), np.concatenate(frag_int), c.mz, 0.0, rs, p)
    return clean_peaks(peaks_mz, peaks_int, c.mz)  # as the spectra stage does, with the default cleaning
