"""``ms2study simulate --background RUN.mzML --library LIB.mgf OUTDIR``: known compounds spiked into a real run.

Each sample is a copy of a real centroided DDA run (the background; or of one of several injections, alternating) with
per-sample variation, plus spiked library compounds with known truth: MS1 isotope envelopes, DDA MS2 scans from
reference spectra, a planted case/control effect on one chemical class, and "known unknowns" whose structures are left
out of the library.

Numbers and their sources (the realistic profile of :mod:`ms2study.simulate.params`, measured on the Q Exactive QC
runs in ../shared/data/mzml by ``benchmarks/biology.py --measure-real``; see the docstring of
:mod:`ms2study.simulate.study`):

- per-sample overall factor: exp(N(0, 0.2)), ``sample_factor_log_sd``;
- per-sample multiplicative field over m/z and retention time: exp(s(m/z, RT) g(m/z, RT)), g a unit-variance Gaussian
  process with correlation lengths 0.02 Da and 10 s (random Fourier features), read at the monoisotopic m/z of each
  MS1 centroid's isotope chain (``isotope_keys``: 13C, 13C2, 34S, 37Cl, 81Br steps down to a more intense peak within
  10 ppm), so a compound's isotopes share one factor while other ions, even co-eluting and 1 Da apart, vary
  independently, as compounds of a real study do; s is the study's own field of per-feature ln-sds, log-normal with
  median 0.45 (the realistic ``biological_log_sd``) and ln-sd 0.4 (``biological_log_sd_spread``; 10-90 %: 0.27-0.75;
  real outcome tables: per-feature sd of ln abundance 0.38 / 0.78 / 1.22), so features differ in how much they vary;
- per-sample retention-time drift, applied to every scan (background and spiked alike): a shift N(0, ``rt_drift_s``),
  a stretch about the run's middle N(0, 0.004 x ``rt_drift_s`` / 2) and a smooth warp of amplitude
  N(0, ``rt_drift_s`` / 2), the realistic mzML profile's numbers (:mod:`ms2study.simulate.params`: 2 s, 0.004, 1 s)
  for the default 2 s; two consecutive real injections (QC runs 04 / 05, MZmine's aligned list) differ by 0.09 s
  (sd 0.38 s), a batch of 16 drifts more;
- per-sample mass calibration offset N(0, ``calibration_ppm``) applied to every m/z written (MS1 centroids,
  precursors, isolation targets, fragments): 1 ppm, the realistic profile's ``calibration_error_ppm`` (QC runs 04 /
  05 differ by -0.18 ppm, median over MZmine's aligned features);
- elution: Gaussian with FWHM uniform between the 10 % and 90 % quantiles of the background's own peak widths
  (complete chromatographic peaks of persistent ions whose apex reaches the 90 % quantile of MS1 centroid
  intensities; QC run 04: 1.6-3.3 s, where MZmine's list says 2.1-3.8 s; the TripleTOF run AssayGeneratorMetabo in
  ../shared/data/mzml: 2.7-4.5 s); 2.1-3.8 s when the run has fewer than 20 such peaks;
- isotopes: the protonated formula's isotopologues at their true masses (pyOpenMS FineIsotopePatternGenerator:
  37Cl, 81Br and 34S where they lie, not on a 13C ladder), M+0 to M+4, those the run does not resolve merged into
  one centroid, centroids below 0.5 % of the monoisotopic left out (:func:`isotope_envelope`);
- m/z range: compounds whose [M+H]+ lies in the 0.1-99.9 % quantiles of the background's MS1 centroid m/z, within
  its scan window (QC run 04: 120-1462; TripleTOF run: 52-793 in a 50-2000 window, which is warned about);
- apex heights: log-uniform between the 5 % and 99.5 % quantiles of the background's MS1 centroid intensities
  (QC run 04: 10^3.79-10^6.47; detected feature heights there 10^3.83-10^6.76, 1-99 %);
- MS1 m/z error: N(0, sd) per centroid, sd the background's own scan-to-scan m/z jitter at the centroid's
  intensity (ions followed over at least 5 consecutive MS1 scans, robust sd in 4 intensity bins, interpolated;
  QC run 04: 1.5 ppm for its weakest quarter to 0.7 ppm for its strongest; TripleTOF run: 2.8 to 1.5 ppm); 1 ppm
  (Orbitrap) when the run has fewer than 20 such ions; peaks below the background's 5 % quantile of per-scan
  minimum centroid intensity (QC run 04: 2,787) are not written, as the instrument would not report them;
- DDA: an MS2 scan where the compound's apex height in the sample is at least the 1 % quantile of the background's
  precursor intensities (QC run 04: 10^5.78), two when 10x above; precursor charge, isolation window, polarity,
  activation and collision energy copied from the background's MS2 scans; the precursor and isolation target m/z
  are the compound's m/z with the MS1 m/z error at the precursor's intensity (as the instrument reports the ion it
  measured in the survey scan; before session 38 exact); MS2 total intensity = precursor
  intensity x the background's median ratio of MS2 total intensity to precursor MS1 intensity (QC run 04: 0.67),
  recorded with co-isolated background fragments, ion statistics and fragment m/z error
  (:mod:`ms2study.simulate.spikein_ms2`); fragment peaks below the background's 5 % quantile of MS2 minimum peak
  intensity (1,687) are dropped.

Files: ``mzml/S01.mzML`` ... (sorted by RT; added MS2 scans get native ids "... scan=N" after the background's
last, title "spiked MS2"), ``samples.tsv`` (sample_id, file, group: first half control; with several backgrounds
also ``background``), ``config.yaml``, ``library.mgf`` (input records verbatim), ``ground_truth.tsv``
(:mod:`ms2study.simulate.spikein_truth`), ``simulation.json`` (per run: factor, drift parts, calibration offset;
``fold_change`` null when nothing is changed). A spiked ion closer to another centroid than the run resolves (the
0.1 % quantile of neighbouring MS1 centroid spacings; QC run 04: 19.5 ppm, TripleTOF run: 75 ppm; at most 20 ppm
in a sparse run: :mod:`ms2study.simulate.spikein_background`) is merged with it into one centroid, as the
instrument would report them. ``background_measured`` in simulation.json holds every number measured on the
background and, in ``sources``, how each was found or that a fallback was used.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms

from ms2study.core.atomic import atomic_path, write_text
from ms2study.core.errors import InputError
from ms2study.simulate.formula_mass import mono_weight
from ms2study.simulate.mzml import write_mzml
from ms2study.simulate.outdir import check_outdir, study_folder
from ms2study.simulate.params import stream
from ms2study.simulate.spikein_background import (
    Background,
    check_backgrounds_match,
    read_background,
    warn_tof_calibration,
)
from ms2study.simulate.spikein_library import (
    Record,
    allowed,
    chemical_class,
    is_mh,
    mh_mz,
    read_mgf_records,
    require_structures,
    usable_records,
    write_study_library,
)
from ms2study.simulate.spikein_ms2 import SampleScans, isolation_half_widths, recorded_fragments
from ms2study.simulate.spikein_truth import truth_rows, with_realised_fold
from ms2study.simulate.spikein_variation import (
    CALIBRATION_PPM,
    FIELD_LENGTH_DA,
    FIELD_LENGTH_S,
    FIELD_LOG_SD,
    FIELD_SD_SPREAD,
    RT_DRIFT_S,
    SAMPLE_FACTOR_LOG_SD,
    Variation,
    check_drift,
    isotope_keys,
    merge_unresolved,
    variation,
)

CONFIG_YAML = """library: library.mgf
models:
  outcomes:
    - {column: group, type: binary, positive_class: case}
"""
# effect "score": the outcome the planted class follows; group stays as a null outcome (a trial read it as the
# effect); with --n-changed 0 neither carries one (trial AZ read the first comment as saying that score did)
SCORE_OUTCOME, SCORE_NULL_OUTCOME = ("    - {column: score, type: continuous}\n# " + note for note in (
    "group carries no planted effect in this study (--effect score): a null outcome to check against\n",
    "neither group nor score carries a planted effect in this study (--n-changed 0): null outcomes to check against\n"))
EFFECTS = ("group", "score")
# several backgrounds: the sheet's column saying which each sample copies, offered as a covariate (trial AM)
BACKGROUND_NOTE = ("  # samples.tsv's column 'background' names the run each sample copies; to adjust the tests and "
                   "models for it:\n  # covariates: [background]\n")
# Purposes of ms2study.simulate.params.stream used here (numbers free in that list).
_SELECT, _SPECTRUM = 40, 42  # 41 and 43: spikein_variation


@dataclass
class Spiked:
    """One spiked compound: its records (``query`` becomes MS2, ``library`` stay in the written library)."""
    block: str
    inchikey: str
    name: str
    formula: str
    chemical_class: str
    mz: float
    rt_s: float
    fwhm_s: float
    height: float
    isotopes: np.ndarray            # relative heights of the isotope centroids (monoisotopic 1.0)
    isotope_da: np.ndarray          # and their m/z offsets from the monoisotopic ion (Da)
    query: Record
    ms2_source: str
    in_library: bool = True
    changed: bool = False
    library: list[Record] = field(default_factory=list)


def isotope_envelope(formula: str, resolution_ppm: float, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The [M+H]+ isotope centroids of ``formula`` as a run that resolves ``resolution_ppm`` reports them: (m/z
    offsets from the monoisotopic ion in Da, relative heights with the monoisotopic 1.0), ascending, nominal
    isotopes M+0 to M+``n``-1, those >= 0.5 % of the monoisotopic kept.

    The isotopologues lie at their true masses (pyOpenMS ``FineIsotopePatternGenerator`` on the protonated formula,
    those >= 1e-5 of the most abundant): 37Cl, 34S, 81Br and 13C2 each where it is, not on a 13C ladder. Those
    closer than ``resolution_ppm`` become one centroid (summed, intensity-weighted m/z), greedily: the most
    abundant takes every one within ``resolution_ppm`` of it, then the next, so that small isotopologues between
    two resolved peaks do not chain them into one (as :func:`merge_unresolved` alone would)."""
    ef = oms.EmpiricalFormula(formula)
    ef += oms.EmpiricalFormula("H")
    mono = mono_weight(ef)
    peaks = ef.getIsotopeDistribution(oms.FineIsotopePatternGenerator(1e-5, False, False)).getContainer()
    mz = np.array([p.getMZ() for p in peaks], dtype=np.float64)
    abundance = np.array([p.getIntensity() for p in peaks], dtype=np.float64)
    keep = (np.rint(mz - mono) >= 0) & (np.rint(mz - mono) < n)
    mz, abundance = mz[keep], abundance[keep]
    label = np.full(mz.size, -1)
    for i in np.argsort(-abundance, kind="stable"):
        if label[i] < 0:
            label[(label < 0) & (np.abs(mz - mz[i]) <= resolution_ppm * 1e-6 * mz[i])] = i
    label = np.unique(label, return_inverse=True)[1]
    total = np.bincount(label, weights=abundance)
    centre, total = merge_unresolved(np.bincount(label, weights=abundance * mz) / total, total, resolution_ppm)
    # the first centroid is the monoisotopic ion alone: offsets from it keep offset[0] exactly 0
    offset, rel = centre - centre[0], total / total[0]
    return offset[rel >= 0.005], rel[rel >= 0.005]


def choose_compounds(records: list[Record], usable: list[Record], bg: Background, n_compounds: int, n_changed: int,
                     unknown_fraction: float, rs: np.random.Generator, library_path: Path) -> tuple[list[Spiked], str]:
    """Draw ``n_compounds`` distinct structures (first InChIKey block) from ``usable``: ``n_changed`` of one class
    (drawn among classes with at least ``n_changed`` structures), the rest of other classes; a share
    ``unknown_fraction`` are known unknowns. Returns the compounds and the planted class.

    Raises InputError naming ``library_path`` when too few structures or no class large enough."""
    by_block: dict[str, list[Record]] = {}
    for r in usable:
        by_block.setdefault(r.block, []).append(r)
    if len(by_block) < n_compounds:  # simulate_spikein says why before this (require_structures)
        raise InputError(f"only {len(by_block)} structures of the library are usable and {n_compounds} are asked "
                         "for", file=str(library_path), fix="pass a larger library or a smaller --compounds")
    classes: dict[str, list[str]] = {}
    for b, recs in sorted(by_block.items()):
        classes.setdefault(chemical_class(recs[0]), []).append(b)
    # A planted class needs n_changed structures of its own and n_compounds - n_changed of the other classes.
    eligible = sorted(c for c, bs in classes.items()
                      if len(bs) >= max(n_changed, 1) and len(by_block) - len(bs) >= n_compounds - n_changed)
    if n_changed and not eligible:
        raise InputError(f"no chemical class has {n_changed} usable structures with {n_compounds - n_changed} "
                         f"more of other classes (classes: {len(classes)}, largest: {max(map(len, classes.values()))} "
                         f"structures)", file=str(library_path),
                         fix=f"pass a larger library, or --n-changed {max(map(len, classes.values()))} or less "
                             f"(the largest class) with --compounds at most {len(by_block)} (the usable structures)")
    planted = str(rs.choice(eligible)) if n_changed else ""
    changed = list(rs.choice(classes[planted], n_changed, replace=False)) if n_changed else []
    others = sorted(b for b in by_block if not n_changed or chemical_class(by_block[b][0]) != planted)
    rest = list(rs.choice(others, n_compounds - n_changed, replace=False))
    blocks = changed + rest
    unknown = set(rs.choice(blocks, round(unknown_fraction * len(blocks)), replace=False).tolist())
    all_by_block: dict[str, list[Record]] = {}
    for r in records:
        all_by_block.setdefault(r.block, []).append(r)
    (lo_rt, hi_rt), out = bg.rt_range, []
    for b in blocks:
        recs = by_block[b]
        query = recs[int(rs.integers(len(recs)))]
        f, fwhm = query.fields, float(rs.uniform(*bg.fwhm_s))
        # The query's own record leaves the library unless no other [M+H]+ record of the structure stays there.
        other_mh = any(r is not query and allowed(r) and is_mh(r) for r in all_by_block[b])
        iso_da, iso_rel = isotope_envelope(f["FORMULA"], bg.resolution_ppm)
        spiked = Spiked(
            block=b, inchikey=f["INCHIKEY"], name=f.get("NAME", b), formula=f["FORMULA"],
            chemical_class=chemical_class(query), mz=float(mh_mz(f["FORMULA"])),
            rt_s=float(rs.uniform(lo_rt + 2 * fwhm, hi_rt - 2 * fwhm)), fwhm_s=fwhm,
            height=float(np.exp(rs.uniform(*np.log(bg.height_range)))), isotopes=iso_rel, isotope_da=iso_da,
            query=query, ms2_source="other_record" if other_mh else "same_record_noised",
            in_library=b not in unknown, changed=b in changed)
        if spiked.in_library:
            spiked.library = [r for r in all_by_block[b] if allowed(r) and (r is not query or not other_mh)]
        out.append(spiked)
    return out, planted


def _query_peaks(c: Spiked, rs: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The MS2 pattern of ``c`` (relative, max 1): a different record as is, or the same record with intensity
    noise (ln-sd 0.2), peaks below 2 % of the maximum dropped and 3 noise peaks (1-3 %) below the precursor."""
    mz, inten = c.query.mz.copy(), c.query.intensity.astype(np.float64)
    inten = inten / inten.max()
    if c.ms2_source == "same_record_noised":
        inten = inten * np.exp(0.2 * rs.standard_normal(inten.size))
        keep = inten >= 0.02 * inten.max()
        mz, inten = mz[keep], inten[keep]
        mz = np.concatenate([mz, rs.uniform(50.0, max(c.mz - 2.0, 51.0), 3)])
        inten = np.concatenate([inten, rs.uniform(0.01, 0.03, 3) * inten.max()])
        inten = inten / inten.max()
    order = np.argsort(mz)
    return mz[order], inten[order]


def spike_sample(bg: Background, compounds: list[Spiked], heights: np.ndarray, var: Variation,
                 rs: np.random.Generator, patterns: list,
                 keys: list[np.ndarray | None]) -> tuple[oms.MSExperiment, np.ndarray]:
    """One sample: the background with every MS1/MS2 intensity x the sample's factor at its (m/z, RT) (MS2 at its
    precursor m/z), plus the compounds (``heights``: apex heights in this sample, shape (n,)) in MS1 and DDA MS2;
    then every scan's RT drifted and every m/z recalibrated by the sample's ``var`` (:class:`Variation`).
    ``keys``: per background scan, its MS1 centroids' ``isotope_keys`` (None for other levels).
    Returns the experiment (sorted by RT), the number of MS2 scans per compound, shape (n,), and each compound's
    mean co-isolated share of its MS2 scans (NaN without one; :mod:`ms2study.simulate.spikein_ms2`)."""
    exp, ms1_scans, ms2_scans = oms.MSExperiment(), [], []
    # the background's instrument (model, mass analyzers): the qc stage reads it (a TOF run's window check)
    exp.setInstrument(bg.exp.getInstrument())
    next_scan = 1 + max(int(m.group(1)) if (m := re.search(r"scan=(\d+)", s.getNativeID())) else 0 for s in bg.exp)
    for spec, key in zip(bg.exp, keys, strict=True):
        s = oms.MSSpectrum(spec)
        mz, inten = s.get_peaks()
        if s.getMSLevel() == 1:
            inten = inten * np.exp(var.log_factor(key, s.getRT()))
            ms1_scans.append(s)
        elif s.getPrecursors():
            inten = inten * float(np.exp(var.log_factor(s.getPrecursors()[0].getMZ(), s.getRT())))
            ms2_scans.append((s.getRT(), s.getPrecursors()[0].getMZ(), (mz, inten)))
        s.set_peaks((mz, inten.astype(np.float32)))
        if s.getMSLevel() != 1:
            exp.addSpectrum(s)
    rts = np.array([s.getRT() for s in ms1_scans])
    acquired = SampleScans(rts, [s.get_peaks() for s in ms1_scans], np.array([r for r, _, _ in ms2_scans]),
                        np.array([p for _, p, _ in ms2_scans]), [k for _, _, k in ms2_scans])
    window = isolation_half_widths(bg.template)
    add_mz, add_int = [[] for _ in ms1_scans], [[] for _ in ms1_scans]
    n_ms2, coisolated = np.zeros(len(compounds), dtype=int), [[] for _ in compounds]
    for k, c in enumerate(compounds):
        sigma = c.fwhm_s / 2.3548
        near = np.flatnonzero(np.abs(rts - c.rt_s) <= 4 * sigma)
        for j in near:
            shape = np.exp(-0.5 * ((rts[j] - c.rt_s) / sigma) ** 2)
            iso_int = heights[k] * shape * c.isotopes
            iso_mz = c.mz + c.isotope_da
            iso_mz = iso_mz * (1.0 + bg.mz_jitter_ppm(iso_int) * 1e-6 * rs.standard_normal(iso_mz.size))
            add_mz[j].extend(iso_mz[iso_int >= bg.ms1_floor])
            add_int[j].extend(iso_int[iso_int >= bg.ms1_floor])
        if heights[k] < bg.dda_threshold:
            continue
        n = 2 if heights[k] >= 10 * bg.dda_threshold else 1
        for t in np.sort(c.rt_s + rs.uniform(-0.5, 0.5, n) * c.fwhm_s):
            precursor = heights[k] * float(np.exp(-0.5 * ((t - c.rt_s) / sigma) ** 2))
            frag_mz, frag_int, own, share = recorded_fragments(bg, acquired, c.mz, precursor, float(t), *patterns[k],
                                                               window, rs)
            if not own.any():
                continue
            s = oms.MSSpectrum(bg.template)
            s.setRT(float(t))
            s.setNativeID(f"controllerType=0 controllerNumber=1 scan={next_scan}")
            next_scan += 1
            prec = oms.Precursor(bg.template.getPrecursors()[0])  # window, activation, energy as the background's
            # the precursor as measured in the survey scan: the MS1 m/z error at its intensity (trials K, M)
            measured = c.mz * (1.0 + float(bg.mz_jitter_ppm(precursor)) * 1e-6 * rs.standard_normal())
            prec.setMZ(measured), prec.setCharge(1), prec.setIntensity(float(precursor))
            prec.setMetaValue(_TARGET, measured)  # else a copied target would be the template's
            before = np.flatnonzero(rts <= t)
            if before.size and prec.metaValueExists("spectrum_ref"):
                prec.setMetaValue("spectrum_ref", ms1_scans[before[-1]].getNativeID())
            s.setPrecursors([prec])
            s.set_peaks((frag_mz, frag_int.astype(np.float32)))
            _set_summary(s, "spiked MS2")  # says which scans were added, not which compound
            exp.addSpectrum(s)
            n_ms2[k] += 1
            coisolated[k].append(share)
    for j, s in enumerate(ms1_scans):
        if add_mz[j]:
            mz, inten = s.get_peaks()
            mz, inten = merge_unresolved(np.concatenate([mz, np.asarray(add_mz[j])]),
                                         np.concatenate([inten.astype(np.float64), np.asarray(add_int[j])]),
                                         bg.resolution_ppm)
            s.set_peaks((mz, inten.astype(np.float32)))
        exp.addSpectrum(s)
    scans = exp.getSpectra()  # copies: iterating an MSExperiment does not change it
    for s in scans:
        _drift_and_recalibrate(s, var)
    exp.setSpectra(scans)
    exp.sortSpectra(True)
    exp.updateRanges()
    return exp, n_ms2, np.array([np.mean(v) if v else np.nan for v in coisolated])


_TARGET = "isolation window target m/z"


def _drift_and_recalibrate(s: oms.MSSpectrum, var: Variation) -> None:
    """Move scan ``s`` to its drifted RT and scale every m/z it carries (peaks, precursors, isolation targets) by
    1 + ``var.calibration_ppm`` x 1e-6, in place."""
    scale = 1.0 + var.calibration_ppm * 1e-6
    s.setRT(float(var.drift(s.getRT())))
    mz, inten = s.get_peaks()
    s.set_peaks((mz * scale, inten))
    precursors = []
    for prec in s.getPrecursors():
        prec.setMZ(prec.getMZ() * scale)
        if prec.metaValueExists(_TARGET):
            prec.setMetaValue(_TARGET, float(prec.getMetaValue(_TARGET)) * scale)
        precursors.append(prec)
    if precursors:
        s.setPrecursors(precursors)
    _set_summary(s)


def _set_summary(s: oms.MSSpectrum, title: str | None = None) -> None:
    """Keep the scan's stored TIC / base peak / title meta values true to its (changed) peaks."""
    mz, inten = s.get_peaks()
    if inten.size:
        for key, value in (("total ion current", float(inten.sum())), ("base peak m/z", float(mz[inten.argmax()])),
                           ("base peak intensity", float(inten.max())), ("lowest observed m/z", float(mz.min())),
                           ("highest observed m/z", float(mz.max()))):
            if s.metaValueExists(key):
                s.setMetaValue(key, value)
    s.setMetaValue("spectrum title", title) if title is not None else None


def simulate_spikein(outdir: Path, background: Path | list[Path], library: Path, n_samples: int = 16,
                     n_compounds: int = 60,
                     n_changed: int = 12, fold_change: float = 3.0, unknown_fraction: float = 1 / 3,
                     library_size: int | None = None, seed: int = 0, overwrite: bool = False,
                     rt_drift_s: float = RT_DRIFT_S, calibration_ppm: float = CALIBRATION_PPM,
                     effect: str = "group", height_quantiles: tuple[float, float] = (0.05, 0.995)) -> dict:
    """Write a spike-in study into ``outdir`` (files: see the module docstring) and return its summary.

    ``background``: centroided DDA mzML, or a list of several injections of one sample (e.g. repeated pooled-QC
    runs): sample i is a copy of background i mod their number (with two backgrounds and an even number of controls,
    each group holds each background equally often), and the real run-to-run differences (retention time,
    intensities, which precursors DDA picked) come on top of the simulated variation; the first background sets the
    compounds' m/z range, heights, widths and the drift check. ``library``: MGF (``.gz`` allowed) whose records
    carry ADDUCT, INCHIKEY, FORMULA, COMPOUND_CLASS (unless ``n_changed`` is 0), and IONMODE and LICENSE unless
    positive and the user's own (:mod:`ms2study.simulate.spikein_library`). Half the samples (rounded down, the
    later ones) are cases; ``n_changed`` spiked compounds of one class are ``fold_change`` x higher in cases.
    ``effect`` "score": they follow a continuous outcome instead, the sheet's ``score`` (0 to 10, evenly spaced over
    the samples in a seeded order unrelated to the groups; an outcome of the written config.yaml), as
    ``fold_change ** ((score - 5) / 10)``: ``fold_change`` x from the lowest to the highest score, a log2 effect of
    log2(fold_change) / 10 per unit (a trial could plant no continuous relation without editing mzML files).
    ``library_size``: keep at most this many records in the written library (the spiked compounds' records always
    stay). ``rt_drift_s`` (s) and ``calibration_ppm``: sds of each sample's RT drift and m/z calibration offset (0:
    none; module docstring). ``height_quantiles``: the quantiles of the first background's MS1 centroid intensities
    between which the compounds' apex heights are drawn (log-uniform; a compound whose apex stays below the run's DDA
    trigger gets no MS/MS: (0.05, 0.5) makes a low-abundance study without spiked MS/MS, (0.9, 0.99) weak compounds
    that are fragmented). The written
    library holds the input's positive-mode records with a commercial licence or none, minus every record of a
    known unknown's structure (first InChIKey block) and minus the records used as spiked MS2 (unless a structure's
    only record). Deterministic for a seed. The study is built beside ``outdir`` and moved into place at the end
    (:func:`ms2study.simulate.outdir.study_folder`); an ``outdir`` holding a study is refused unless ``overwrite``.
    Raises InputError (naming the file or option and the fix) for fewer than 2 samples, bad counts, a missing,
    profile-mode or MS1-less background, a library with too few usable records (with how many records failed
    each requirement) or an ``outdir`` that cannot take the study; then nothing is written."""
    backgrounds = [Path(b) for b in background] if isinstance(background, (list, tuple)) else [Path(background)]
    if not backgrounds:
        raise InputError("no background run given", fix="pass --background RUN.mzML (one or more)")
    outdir, background, library = Path(outdir), backgrounds[0], Path(library)
    if n_samples < 2:
        raise InputError("a study needs at least 2 samples", fix="pass --samples 2 or more")
    if not 0 <= n_changed <= n_compounds or n_compounds < 1 or fold_change <= 0 or not 0 <= unknown_fraction <= 1:
        raise InputError(f"bad spike-in counts: {n_compounds} compounds, {n_changed} changed, fold {fold_change}, "
                         f"unknown share {unknown_fraction}" + (" (--n-changed is 12 unless given)"
                                                                 if n_changed > n_compounds else ""),
                         fix="use 0 <= --n-changed <= --compounds, --fold-change > 0, 0 <= --unknown-fraction <= 1")
    if not 0 <= height_quantiles[0] < height_quantiles[1] <= 1:
        raise InputError(f"bad --height-quantiles {height_quantiles[0]} {height_quantiles[1]}",
                         fix="give two quantiles LOW HIGH with 0 <= LOW < HIGH <= 1 (default 0.05 0.995)")
    if effect not in EFFECTS:
        raise InputError(f"unknown effect {effect!r}", fix=f"use one of {', '.join(EFFECTS)}")
    if rt_drift_s < 0 or calibration_ppm < 0:
        raise InputError(f"bad --rt-drift-s {rt_drift_s} or --calibration-ppm {calibration_ppm}",
                         fix="use 0 or more (0: no drift, no calibration offset)")
    if library_size is not None and library_size < 1 or seed < 0:
        raise InputError(f"bad --library-size {library_size} or --seed {seed}",
                         fix="use --library-size 1 or more (or leave it out: all records) and --seed 0 or more")
    check_outdir(outdir, overwrite)  # before the minutes of reading a large library
    bgs = [read_background(b) for b in backgrounds]
    check_backgrounds_match(bgs, list(backgrounds))
    warn_tof_calibration(list(backgrounds), calibration_ppm, CALIBRATION_PPM)
    bg = bgs[0]
    bg.height_range = bg.heights_at(*height_quantiles)
    records = read_mgf_records(library)
    usable, failed = usable_records(records, bg.mz_range, need_class=n_changed > 0)
    require_structures(usable, failed, len(records), n_compounds, library, bg.mz_range)
    rs = stream(seed, _SELECT)
    compounds, planted = choose_compounds(records, usable, bg, n_compounds, n_changed, unknown_fraction, rs, library)
    patterns = [_query_peaks(c, stream(seed, _SPECTRUM, k)) for k, c in enumerate(compounds)]
    ids = [f"S{i + 1:02d}" for i in range(n_samples)]
    groups = ["control"] * (n_samples - n_samples // 2) + ["case"] * (n_samples // 2)
    fold = np.array([fold_change if c.changed else 1.0 for c in compounds])
    score = (stream(seed, _SELECT, 2).permutation(np.linspace(0.0, 10.0, n_samples)) if effect == "score"
             else np.full(n_samples, np.nan))
    check_drift(np.array([s.getRT() for s in bg.exp]), bg.rt_range, ids, seed, rt_drift_s, calibration_ppm)
    # where the per-sample field is read for each MS1 centroid of the background (the same in every sample)
    keys = [[isotope_keys(*s.get_peaks()) if s.getMSLevel() == 1 else None for s in b.exp] for b in bgs]
    with study_folder(outdir, overwrite) as folder:
        truth, runs = [], {}
        for i, sid in enumerate(ids):
            rs_s, var = variation(seed, i, bg.rt_range, rt_drift_s, calibration_ppm)
            heights = np.array([c.height for c in compounds]) * np.exp(var.log_factor(
                [c.mz for c in compounds], [c.rt_s for c in compounds]))
            exponent = (score[i] - 5.0) / 10.0 if effect == "score" else float(groups[i] == "case")
            heights = heights * fold ** exponent
            exp, n_ms2, shares = spike_sample(bgs[i % len(bgs)], compounds, heights, var, rs_s, patterns,
                                              keys[i % len(bgs)])
            write_mzml(exp, folder / "mzml" / f"{sid}.mzML")
            runs[sid] = {"background": backgrounds[i % len(bgs)].name, "sample_factor": var.factor,
                         "calibration_ppm": var.calibration_ppm, **var.drift_info,
                         "n_spectra": exp.getNrSpectra(), "n_spiked_ms2": int(n_ms2.sum())}
            truth.extend(truth_rows(sid, groups[i], score[i], compounds, heights, var, n_ms2, fold, exponent,
                                    bg.ms1_floor, shares))
        n_library = write_study_library(folder / "library.mgf", records, compounds, library_size,
                                        stream(seed, _SELECT, 1))
        # several backgrounds: which one each sample copies, a source the samples share beyond the outcome (the
        # differential stage's hidden-structure caution names this column; models: covariates can take it)
        sheet = pl.DataFrame({"sample_id": ids, "file": [f"mzml/{s}.mzML" for s in ids], "group": groups,
                              **({"score": np.round(score, 4)} if effect == "score" else {}),
                              **({"background": [Path(backgrounds[i % len(bgs)]).stem for i in range(n_samples)]}
                                 if len(bgs) > 1 else {})})
        truth_df = with_realised_fold(pl.DataFrame(truth, infer_schema_length=None), effect)
        for name, table in (("samples.tsv", sheet), ("ground_truth.tsv", truth_df)):
            with atomic_path(folder / name) as tmp:
                table.write_csv(tmp, separator="\t", float_precision=6)
        score_part = (SCORE_OUTCOME if planted else SCORE_NULL_OUTCOME) if effect == "score" else ""
        write_text(CONFIG_YAML + score_part
                   + (BACKGROUND_NOTE if len(bgs) > 1 else ""), folder / "config.yaml")
        summary = {
            "seed": seed, "n_samples": n_samples, "background": background.name,
            "backgrounds": [b.name for b in backgrounds], "library": library.name,
            "n_compounds": len(compounds), "planted_class": planted, "n_changed": n_changed,
            "fold_change": fold_change if n_changed else None,  # nothing changed: no fold to record (a trial)
            "effect": effect,
            "n_known_unknowns": sum(not c.in_library for c in compounds), "n_library_records": n_library,
            "cases": [s for s, gr in zip(ids, groups, strict=True) if gr == "case"],
            "changed_compounds": [c.inchikey for c in compounds if c.changed],
            "background_measured": bg.measured(),
            "n_usable_records": len(usable), "n_spiked_ms2": sum(r["n_spiked_ms2"] for r in runs.values()),
            "parameters": {"sample_factor_log_sd": SAMPLE_FACTOR_LOG_SD, "field_log_sd": FIELD_LOG_SD,
                           "field_sd_spread": FIELD_SD_SPREAD, "field_length_da": FIELD_LENGTH_DA,
                           "field_length_s": FIELD_LENGTH_S, "rt_drift_s": rt_drift_s,
                           "calibration_ppm": calibration_ppm,
                           "unknown_fraction": unknown_fraction, "library_size": library_size,
                           "height_quantiles": [float(q) for q in height_quantiles]},
            "runs": runs}
        write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", folder / "simulation.json")
    return {k: v for k, v in summary.items() if k != "runs"}

