"""Batch acquisition of a simulated study: injection order, pooled QCs, solvent blanks, drift, contaminants, adducts.

A lab runs its samples in batches, in a randomised order, with pooled QC injections between them and solvent
blanks at the ends; the instrument's response jumps between batches and drifts with injection order, solvent and
plasticiser contaminants show up in every run, and one compound gives several ions. ``acquire`` turns a study
design (:mod:`ms2study.simulate.design`) into that acquisition, with its truth, for the mzML writer
(:func:`ms2study.simulate.study.simulate_study`) and the features-from-truth path (``simulate_features``):

- injection order (stream 20): the study samples shuffled and dealt over ``batches`` group by group (block
  randomisation: each outcome group spread evenly over the batches, so group and batch are not confounded); in each
  batch the first half of its ``blanks`` (rounded up), a QC, then after every ``qc_every`` samples a QC (so one
  also ends the batch), then the other blanks. Run ids: ``S01``.. (the design's), ``QC01``.., ``BLANK01``..
  numbered in injection order.
- pooled QC: the true abundance is the mean of the study samples' abundances (absent counted as 0); a blank has
  no compound.
- intensity response (stream 25): run r in batch b at position x in 0..1 (first to last injection of the batch)
  multiplies compound j by ``offset_b * compound_offset_bj * exp(a_j * ln(end_b) * x ** c_b)``: offset_b =
  exp(N(0, ``batch_offset_log_sd``)), compound_offset = exp(N(0, ``batch_compound_log_sd``)), end_b ~
  U(``drift_end``) (a typical compound's factor at the batch's last injection), c_b ~ U(``drift_curvature``),
  a_j ~ U(1 -+ ``drift_compound_spread``); monotone in x for every compound, different amplitudes per compound.
- contaminants (stream 24): ``n_contaminants`` eluting ions (log-uniform apex ``contaminant_intensity``, wide
  peaks, an M+1 isotope, a few fragments), m/z kept 20 ppm away from every compound ion within 60 s; in every run
  (blanks, QCs and samples alike) at their level times exp(N(0, ``contaminant_run_log_sd``)) times the run's
  instrument factor (offset_b * exp(ln(end_b) * x ** c_b)): what blank filtering must flag.
- with ``adducts`` (stream 23): per compound an [M+Na]+ ion (ratio U(``na_ratio``) to [M+H]+), for a share
  ``nh4_fraction`` an [M+NH4]+ (U(``nh4_ratio``)), for a share ``in_source_fraction`` an in-source fragment (its
  in-silico spectrum's most intense fragment of m/z 60 or more, U(``in_source_ratio``)); all co-elute with the compound (same apex,
  same peak shape in each run) and follow its abundance. Intrinsic cations ([M]+) get no Na+/NH4+ adduct. Masses:
  M = m/z([M+H]+) - 1.007276, [M+Na]+ = M + 22.989218, [M+NH4]+ = M + 18.033823.

May import ``ms2study.core`` and the simulate modules ``params``, ``compounds`` and ``mzml``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.core.atomic import atomic_path, write_text
from ms2study.core.errors import InputError
from ms2study.simulate.compounds import Compound
from ms2study.simulate.mzml import C13_SPACING, ExtraIons
from ms2study.simulate.params import batch_mode, stream

PROTON = 1.007276
NA_ION = 22.989218
NH4_ION = 18.033823
ION_LABELS = ("[M+Na]+", "[M+NH4]+", "in-source")


def _stratified_batches(order: np.ndarray, groups: list, n_batches: int) -> list[np.ndarray]:
    """``order`` (a permutation of the samples) split into ``n_batches`` runs of samples, each group dealt over the
    batches in turn (block randomisation, as labs balance groups over batches so that group and batch are not
    confounded); within a batch the samples keep their random order. Batch sizes differ by at most one."""
    batch_of = np.empty(order.size, dtype=np.int64)
    dealt = 0
    for group in dict.fromkeys(groups[i] for i in order):
        for i in (i for i in order if groups[i] == group):
            batch_of[i] = dealt % n_batches
            dealt += 1
    return [np.array([i for i in order if batch_of[i] == b], dtype=np.int64) for b in range(n_batches)]


def injection_plan(samples: list[dict], seed: int, p: dict) -> list[dict]:
    """The acquisition sequence: one dict per run in injection order with ``sample_id``, ``file``,
    ``sample_type`` (sample | qc | blank), ``injection_order`` (1..N), ``batch`` ("1", "2", ...), ``position``
    (0..1 within the batch), ``design_index`` (the study sample's row in ``samples``, else None) and ``number``
    (the QC's or blank's running number, 1-based, else None). Raises InputError for more batches than samples."""
    n, n_batches = len(samples), int(p["batches"])
    if n_batches > n:
        raise InputError(f"simulate batches is {n_batches} for {n} samples", fix="use at most one batch per sample")
    order = stream(seed, 20).permutation(n)
    k, n_blanks = int(p["qc_every"]), int(p["blanks"])
    runs: list[dict] = []
    n_qc = n_blank = 0
    for b, chunk in enumerate(_stratified_batches(order, [s.get("group") for s in samples], n_batches), start=1):
        seq: list[int | str] = ["blank"] * ((n_blanks + 1) // 2)
        if k > 0:
            seq.append("qc")
            for start in range(0, len(chunk), k):
                seq += [int(s) for s in chunk[start:start + k]] + ["qc"]
        else:
            seq += [int(s) for s in chunk]
        seq += ["blank"] * (n_blanks // 2)
        for pos, item in enumerate(seq):
            run = {"batch": str(b), "position": pos / max(len(seq) - 1, 1), "design_index": None, "number": None}
            if item == "qc":
                n_qc += 1
                run.update(sample_id=f"QC{n_qc:02d}", sample_type="qc", number=n_qc)
            elif item == "blank":
                n_blank += 1
                run.update(sample_id=f"BLANK{n_blank:02d}", sample_type="blank", number=n_blank)
            else:
                run.update(sample_id=samples[item]["sample_id"], sample_type="sample", design_index=item)
            run["file"] = samples[item]["file"] if run["design_index"] is not None else f"mzml/{run['sample_id']}.mzML"
            run["injection_order"] = len(runs) + 1
            runs.append(run)
    return runs


def drift_model(n_batches: int, n_compounds: int, seed: int, p: dict) -> dict:
    """The intensity response's parameters (module docstring): ``offset`` and ``end``, ``curvature`` per batch,
    ``compound_offset`` (batches x compounds) and ``amplitude`` per compound; stream (seed, 25)."""
    rng = stream(seed, 25)
    spread = float(p["drift_compound_spread"])
    if not 0.0 <= spread < 1.0:
        raise InputError(f"simulate drift_compound_spread must be in [0, 1) (got {spread})",
                         fix="a spread of 1 or more would let a compound drift upwards")
    return {
        "offset": np.exp(p["batch_offset_log_sd"] * rng.standard_normal(n_batches)),
        "compound_offset": np.exp(p["batch_compound_log_sd"] * rng.standard_normal((n_batches, n_compounds))),
        "end": rng.uniform(*p["drift_end"], n_batches),
        "curvature": rng.uniform(*p["drift_curvature"], n_batches),
        "amplitude": rng.uniform(1.0 - spread, 1.0 + spread, n_compounds),
    }


def response(model: dict, batch: int, position: float) -> np.ndarray:
    """Per-compound intensity factor of a run in ``batch`` (0-based) at ``position`` (0..1)."""
    shape = np.log(model["end"][batch]) * position ** model["curvature"][batch]
    return model["offset"][batch] * model["compound_offset"][batch] * np.exp(model["amplitude"] * shape)


def instrument_response(model: dict, batch: int, position: float) -> float:
    """The factor of a typical ion (amplitude 1, no compound part): what contaminants get."""
    shape = np.log(model["end"][batch]) * position ** model["curvature"][batch]
    return float(model["offset"][batch] * np.exp(shape))


def contaminants(compounds: list[Compound], seed: int, p: dict) -> dict:
    """The study's eluting contaminants (module docstring): arrays ``mz``, ``rt_s``, ``level``, ``fwhm_s``,
    ``tailing``, ``isotopes`` (list) and ``spectra`` (list of (m/z, relative intensity)); stream (seed, 24)."""
    rng = stream(seed, 24)
    n = int(p["n_contaminants"])
    lo, hi = p["mz_range"]
    margin, rt_max = p["rt_margin_s"], p["rt_max_s"]
    ion_mz = np.concatenate([[c.mz, c.mz + C13_SPACING, c.mz - PROTON + NA_ION, c.mz - PROTON + NH4_ION]
                             for c in compounds]) if compounds else np.empty(0)
    ion_rt = np.repeat([c.rt_s for c in compounds], 4)
    mz, rt = np.empty(n), np.empty(n)
    for k in range(n):
        for _ in range(1000):  # redraw a contaminant that would sit on a compound's ion
            nominal = float(rng.integers(int(lo) + 50, int(min(hi, 900.0))))
            mz[k] = nominal + 0.0007 * nominal  # plasticisers, PEG, siloxanes: a positive mass defect
            rt[k] = rng.uniform(margin, rt_max - margin)
            clash = (np.abs(ion_mz - mz[k]) <= 20e-6 * mz[k]) & (np.abs(ion_rt - rt[k]) <= 60.0)
            if not clash.any():
                break
    level = np.exp(rng.uniform(*np.log(p["contaminant_intensity"]), n))
    fwhm = rng.uniform(*p["contaminant_fwhm_s"], n)
    tailing = rng.uniform(*p["tailing"], n)
    isotopes = [np.array([1.0, 0.011 * m / 14.0]) for m in mz]  # ~ one carbon per 14 Da
    spectra = []
    for m in mz:
        f_mz = np.sort(rng.uniform(50.0, m - 15.0, int(rng.integers(3, 7)))).round(4)
        spectra.append((f_mz, rng.uniform(0.1, 1.0, f_mz.size)))
    return {"mz": mz, "rt_s": rt, "level": level, "fwhm_s": fwhm, "tailing": tailing, "isotopes": isotopes,
            "spectra": spectra}


def adduct_ions(compounds: list[Compound], seed: int, p: dict) -> list[dict]:
    """Every extra ion of the compounds (module docstring): dicts with ``compound`` (index), ``ion`` (one of
    ``ION_LABELS``), ``mz``, ``ratio`` (apex height relative to the compound's main ion), ``isotopes`` and
    ``spectrum`` ((m/z, relative intensity) when isolated); stream (seed, 23), five draws per compound."""
    rng = stream(seed, 23)
    out = []
    for i, c in enumerate(compounds):
        u_na, u_nh4, r_nh4, u_is, r_is = rng.random(5)
        if c.adduct == "[M+H]+":
            neutral = c.mz - PROTON
            na = neutral + NA_ION
            # sodium adducts fragment poorly: mostly the intact ion, some Na-retaining fragments
            shifted = c.spectrum_mz + (NA_ION - PROTON)
            keep = shifted < na - 1.0
            out.append({"compound": i, "ion": "[M+Na]+", "mz": na, "ratio": _between(p["na_ratio"], u_na),
                        "isotopes": c.isotope_ratios,
                        "spectrum": (np.append(shifted[keep], na), np.append(0.4 * c.spectrum_intensity[keep], 1.0))})
            if u_nh4 < p["nh4_fraction"]:
                # an ammonium adduct loses NH3 on activation: the [M+H]+ ion and its fragments
                out.append({"compound": i, "ion": "[M+NH4]+", "mz": neutral + NH4_ION,
                            "ratio": _between(p["nh4_ratio"], r_nh4), "isotopes": c.isotope_ratios,
                            "spectrum": (np.append(c.spectrum_mz, c.mz), np.append(c.spectrum_intensity, 0.5))})
        below = (c.spectrum_mz < c.mz - 2.0) & (c.spectrum_mz >= max(60.0, p["mz_range"][0] + 10.0))
        if u_is < p["in_source_fraction"] and below.any():
            j = int(np.argmax(np.where(below, c.spectrum_intensity, -1.0)))
            frag = float(c.spectrum_mz[j])
            keep = c.spectrum_mz < frag - 1.0
            spectrum = ((c.spectrum_mz[keep], c.spectrum_intensity[keep]) if keep.any()
                        else (np.array([frag]), np.array([1.0])))
            out.append({"compound": i, "ion": "in-source", "mz": frag, "ratio": _between(p["in_source_ratio"], r_is),
                        "isotopes": np.array([1.0]), "spectrum": spectrum})
    return out


def _between(bounds: list[float], u: float) -> float:
    """``u`` in 0..1 mapped onto [low, high]."""
    return float(bounds[0] + (bounds[1] - bounds[0]) * u)


@dataclass
class Acquisition:
    """A study's runs with their truth. ``runs``: :func:`injection_plan`'s dicts (without a batch acquisition:
    the study samples in sheet order, type sample, batch "1"). ``undrifted`` and ``factor``: runs x compounds,
    the true abundance before the response and the response (1 without a batch acquisition); the acquired
    abundance is their product. ``contaminants``: :func:`contaminants` or None; ``contaminant_undrifted`` and
    ``contaminant_height``: runs x contaminants (before and after the instrument response). ``ions``:
    :func:`adduct_ions` (empty without ``adducts``). ``model``: :func:`drift_model` or None."""

    runs: list[dict]
    undrifted: np.ndarray
    factor: np.ndarray
    contaminants: dict | None
    contaminant_undrifted: np.ndarray
    contaminant_height: np.ndarray
    ions: list[dict]
    model: dict | None

    @property
    def abundance(self) -> np.ndarray:
        """Runs x compounds: the true abundance as acquired (after batch offset and drift)."""
        return self.undrifted * self.factor

    def extra(self, r: int) -> ExtraIons | None:
        """The extra ions of run ``r`` (adducts at the run's acquired abundance, contaminants), or None."""
        ab = self.abundance[r]
        n_c = 0 if self.contaminants is None else len(self.contaminants["mz"])
        if not self.ions and not n_c:
            return None
        cont = self.contaminants or {"mz": [], "rt_s": [], "fwhm_s": [], "tailing": [], "isotopes": [],
                                     "spectra": []}
        return ExtraIons(
            mz=np.array([e["mz"] for e in self.ions] + list(cont["mz"]), dtype=np.float64),
            height=np.array([e["ratio"] * ab[e["compound"]] for e in self.ions] + list(self.contaminant_height[r])),
            compound=np.array([e["compound"] for e in self.ions] + [-1] * n_c, dtype=np.int64),
            rt_s=np.array([0.0] * len(self.ions) + list(cont["rt_s"])),
            fwhm_s=np.array([0.0] * len(self.ions) + list(cont["fwhm_s"])),
            tailing=np.array([0.0] * len(self.ions) + list(cont["tailing"])),
            isotopes=[e["isotopes"] for e in self.ions] + list(cont["isotopes"]),
            spectra=[e["spectrum"] for e in self.ions] + list(cont["spectra"]),
        )

    def batch_truth(self) -> dict:
        """The acquisition's truth as JSON-ready data (``batch_truth.json``): per injection its id, type, order,
        batch, position, batch offset, typical drift factor (offset excluded) and the contaminants' apex heights
        (contaminants.tsv order); per batch the drift parameters; per compound the drift amplitude and per
        (batch, compound) the offset part (the per-run, per-compound factors are ``ground_truth.tsv``'s
        ``drift_factor``)."""
        m = self.model
        out: dict = {"formula": "factor = offset_b * compound_offset_bj * exp(amplitude_j * ln(end_b) * "
                                "position ** curvature_b)", "injections": []}
        for run in self.runs:
            b = int(run["batch"]) - 1
            out["injections"].append({
                "sample_id": run["sample_id"], "sample_type": run["sample_type"],
                "injection_order": run["injection_order"], "batch": run["batch"], "position": run["position"],
                **({"offset": float(m["offset"][b]), "drift": instrument_response(m, b, run["position"])
                    / float(m["offset"][b])} if m is not None else {}),
                **({"contaminant_height": [float(v) for v in self.contaminant_height[len(out["injections"])]]}
                   if self.contaminants is not None else {})})
        if m is not None:
            out["batches"] = [{"batch": str(b + 1), "offset": float(m["offset"][b]), "end": float(m["end"][b]),
                               "curvature": float(m["curvature"][b])} for b in range(len(m["offset"]))]
            out["compound_amplitude"] = [float(a) for a in m["amplitude"]]
            out["compound_offset"] = [[float(v) for v in row] for row in m["compound_offset"]]
        return out


def acquire(compounds: list[Compound], design: dict, seed: int, p: dict) -> Acquisition:
    """The runs of a study and their truth (module docstring) from its ``design`` (``samples``, ``abundance``).

    Without a batch acquisition (:func:`ms2study.simulate.params.batch_mode` false) the runs are the study samples
    in sheet order at their design abundance, with ``adducts`` ions when asked for, and no random number is drawn
    beyond :func:`adduct_ions`'. Raises InputError for more batches than samples or a bad drift spread."""
    samples, design_ab = design["samples"], design["abundance"]
    n_c = len(compounds)
    ions = adduct_ions(compounds, seed, p) if p["adducts"] else []
    if not batch_mode(p):
        runs = [{"sample_id": s["sample_id"], "file": s["file"], "sample_type": "sample", "injection_order": k + 1,
                 "batch": "1", "position": 0.0, "design_index": k, "number": None} for k, s in enumerate(samples)]
        return Acquisition(runs, np.array(design_ab, dtype=np.float64), np.ones_like(design_ab), None,
                           np.zeros((len(runs), 0)), np.zeros((len(runs), 0)), ions, None)
    runs = injection_plan(samples, seed, p)
    model = drift_model(int(p["batches"]), n_c, seed, p)
    pooled = np.mean(design_ab, axis=0)
    cont = contaminants(compounds, seed, p) if int(p["n_contaminants"]) > 0 else None
    n_cont = 0 if cont is None else len(cont["mz"])
    undrifted, factor = np.zeros((len(runs), n_c)), np.ones((len(runs), n_c))
    cont_undrifted, cont_height = np.zeros((len(runs), n_cont)), np.zeros((len(runs), n_cont))
    for r, run in enumerate(runs):
        b = int(run["batch"]) - 1
        if run["sample_type"] == "sample":
            undrifted[r] = design_ab[run["design_index"]]
        elif run["sample_type"] == "qc":
            undrifted[r] = pooled
        factor[r] = response(model, b, run["position"])
        if cont is not None:
            variation = np.exp(p["contaminant_run_log_sd"] * stream(seed, 24, run["injection_order"])
                               .standard_normal(n_cont))
            cont_undrifted[r] = cont["level"] * variation
            cont_height[r] = cont_undrifted[r] * instrument_response(model, b, run["position"])
    return Acquisition(runs, undrifted, factor, cont, cont_undrifted, cont_height, ions, model)


def run_stream(run: dict, seed: int) -> np.random.Generator | None:
    """The random stream of a QC (seed, 21, n) or blank (seed, 22, n) run; None for a study sample (its own
    stream (seed, 4, s) as without batches)."""
    if run["sample_type"] == "qc":
        return stream(seed, 21, run["number"])
    if run["sample_type"] == "blank":
        return stream(seed, 22, run["number"])
    return None


def sheet_rows(acq: Acquisition, samples: list[dict]) -> list[dict]:
    """The sample sheet of a batch study in injection order: the design's columns (empty for QCs and blanks, so
    models leave them out) plus ``sample_type``, ``injection_order`` and ``batch``."""
    keys = list(samples[0])
    rows = []
    for run in acq.runs:
        base = (samples[run["design_index"]] if run["design_index"] is not None
                else {k: None for k in keys} | {"sample_id": run["sample_id"], "file": run["file"]})
        rows.append({**base, "sample_type": run["sample_type"], "injection_order": run["injection_order"],
                     "batch": run["batch"]})
    return rows


def write_truth(outdir: Path, compounds: list[Compound], acq: Acquisition) -> None:
    """``batch_truth.json`` (with a batch acquisition), ``contaminants.tsv`` (with contaminants) and
    ``adduct_truth.tsv`` (with adducts: compound_id, ion, mz, rt_s (before the run's RT drift), ratio; the
    compound's own ion with ratio 1) into ``outdir``, atomically."""
    if acq.model is not None:
        write_text(json.dumps(acq.batch_truth(), indent=1) + "\n", outdir / "batch_truth.json")
    if acq.contaminants is not None:
        c = acq.contaminants
        table = pl.DataFrame({"contaminant_id": [f"CONT{k + 1:02d}" for k in range(len(c["mz"]))],
                              "mz": c["mz"], "rt_s": c["rt_s"], "level": c["level"], "fwhm_s": c["fwhm_s"]})
        with atomic_path(outdir / "contaminants.tsv") as tmp:
            table.write_csv(tmp, separator="\t", float_precision=6)
    if acq.ions:
        by_compound: dict[int, list[dict]] = {}
        for e in acq.ions:
            by_compound.setdefault(e["compound"], []).append(e)
        rows = []
        for i, c in enumerate(compounds):
            rows.append({"compound_id": c.compound_id, "ion": c.adduct, "mz": c.mz, "rt_s": c.rt_s, "ratio": 1.0})
            rows += [{"compound_id": c.compound_id, "ion": e["ion"], "mz": float(e["mz"]), "rt_s": c.rt_s,
                      "ratio": e["ratio"]} for e in by_compound.get(i, [])]
        with atomic_path(outdir / "adduct_truth.tsv") as tmp:
            pl.DataFrame(rows).write_csv(tmp, separator="\t", float_precision=6)


def summary(acq: Acquisition, p: dict) -> dict:
    """The acquisition's part of ``simulation.json``."""
    types = [run["sample_type"] for run in acq.runs]
    return {"batches": int(p["batches"]), "qc_every": int(p["qc_every"]), "blanks": int(p["blanks"]),
            "adducts": bool(p["adducts"]), "n_runs": len(acq.runs), "n_qc": types.count("qc"),
            "n_blank": types.count("blank"),
            "n_contaminants": 0 if acq.contaminants is None else len(acq.contaminants["mz"]),
            "n_adduct_ions": {label: sum(e["ion"] == label for e in acq.ions) for label in ION_LABELS},
            "injection_order": [run["sample_id"] for run in acq.runs]}
