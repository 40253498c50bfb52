"""Study designs: the sample sheet (groups, ages), the planted effect and every sample's true abundances.

``design_study`` is the demo design (one whole chemical class raised in the cases); ``design_realistic`` the
realistic one (shared per-sample and module variation, heterogeneous compound variances, a sparse effect on
``n_changed`` compounds chosen by ``choose_changed``). Both return the same kind of dict (``samples``,
``abundance``, ``present``, ``planted_class``, ``age_compounds``; the realistic one adds the effect), which
:func:`ms2study.simulate.study.simulate_study` turns into files. May import ``ms2study.core`` and the simulate
modules ``params`` and ``compounds``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from ms2study.core.errors import InputError
from ms2study.simulate.compounds import Compound
from ms2study.simulate.params import stream


def _planted_class(class_sizes: dict[str, int], minimum: int, rng: np.random.Generator, p: dict, fix: str) -> str:
    """``p["planted_class"]`` checked against the classes, or, when it is None, one drawn by ``rng`` among the
    classes with at least ``minimum`` members. Raises InputError for an unknown class or when none is large enough
    (``fix`` says what to change)."""
    classes = sorted(class_sizes)
    planted = p["planted_class"]
    if planted is None:
        eligible = [k for k in classes if class_sizes[k] >= minimum]
        if not eligible:
            raise InputError(f"no chemical class has {minimum} curated compounds", fix=fix)
        return eligible[int(rng.integers(len(eligible)))]
    if planted not in classes:
        raise InputError(f"planted_class '{planted}' is not a class of the compound list", fix=f"use one of {classes}")
    return planted


def _draw_samples(groups: np.ndarray, n_compounds: int, age_compounds: list[int], p: dict,
                  rng_of: Callable[[int], np.random.Generator],
                  levels: Callable[[np.random.Generator, bool], np.ndarray],
                  ) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The per-sample part of a design: (sample sheet rows, abundance, present), both arrays samples x compounds.

    For sample ``s`` (stream ``rng_of(s)``), in this order: age ~ N(age_mean, age_sd) rounded to 0.1 year; ln
    abundances from ``levels(stream, is_case)`` (a new array); ``age_log_slope`` per year from the mean added to the
    ``age_compounds``; each compound absent with probability ``absent_fraction`` (abundance 0), else exp(level).
    """
    n_samples = len(groups)
    samples, abundance = [], np.zeros((n_samples, n_compounds))
    present = np.ones((n_samples, n_compounds), dtype=bool)
    for s in range(n_samples):
        rs = rng_of(s)
        age = round(float(p["age_mean"] + p["age_sd"] * rs.standard_normal()), 1)
        level = levels(rs, groups[s] == "case")
        level[age_compounds] += p["age_log_slope"] * (age - p["age_mean"])
        present[s] = rs.random(n_compounds) >= p["absent_fraction"]
        abundance[s] = np.where(present[s], np.exp(level), 0.0)
        samples.append({"sample_id": f"S{s + 1:02d}", "file": f"mzml/S{s + 1:02d}.mzML", "group": str(groups[s]),
                        "age": age})
    return samples, abundance, present


def design_study(compounds: list[Compound], n_samples: int, seed: int, p: dict) -> dict:
    """Sample sheet, planted effect and per-sample abundances (monoisotopic apex heights, 0 when absent).

    Half of the samples (rounded down) are cases, in which every compound of ``planted_class`` (or of a class with
    at least 10 compounds drawn by the seed) is raised by ln ``fold_change`` + N(0, ``fold_change_log_sd``). Returns
    ``samples`` (sheet rows), ``abundance`` and ``present`` (samples x compounds), ``planted_class`` and
    ``age_compounds`` (compound ids). Raises InputError for an unknown ``planted_class``.
    """
    n_c = len(compounds)
    rng = stream(seed, 1)
    planted = _planted_class(Counter(c.chemical_class for c in compounds), 10, rng, p, fix="set planted_class")
    base = np.log(p["median_abundance"]) + p["abundance_log_sd"] * rng.standard_normal(n_c)
    age_compounds = sorted(rng.choice(n_c, size=min(p["n_age_compounds"], n_c), replace=False).tolist())
    groups = np.array(["case"] * (n_samples // 2) + ["control"] * (n_samples - n_samples // 2))
    rng.shuffle(groups)
    in_class = np.array([c.chemical_class == planted for c in compounds])

    def levels(rs: np.random.Generator, case: bool) -> np.ndarray:
        level = base + p["biological_log_sd"] * rs.standard_normal(n_c)
        if case:
            effect = np.log(p["fold_change"]) + p["fold_change_log_sd"] * rs.standard_normal(n_c)
            level = level + np.where(in_class, effect, 0.0)
        return level

    samples, abundance, present = _draw_samples(groups, n_c, age_compounds, p, lambda s: stream(seed, 2, s), levels)
    return {"samples": samples, "abundance": abundance, "present": present, "planted_class": planted,
            "age_compounds": [compounds[i].compound_id for i in age_compounds],
            "age_compound_names": [compounds[i].name for i in age_compounds]}


def choose_changed(compounds: list[Compound], rng: np.random.Generator, p: dict) -> tuple[np.ndarray, str]:
    """Indices of the compounds the planted effect changes, and the name of the set.

    ``effect_set: class``: ``n_changed`` curated compounds of ``planted_class`` (or of a class with at least
    ``n_changed`` curated members drawn by the seed). ``pathway``: ``n_changed`` compounds drawn from that class's
    curated members together with their background derivatives (a pathway-like family: parent metabolites and
    their conjugates). Raises InputError when the class is unknown or too small.
    """
    n = int(p["n_changed"])
    curated = [i for i, c in enumerate(compounds) if c.in_library]
    planted = _planted_class(Counter(compounds[i].chemical_class for i in curated), n, rng, p, fix="lower n_changed")
    if p["effect_set"] == "class":
        members = [i for i in curated if compounds[i].chemical_class == planted]
    else:
        members = [i for i, c in enumerate(compounds) if c.chemical_class == planted]
    if len(members) < n:
        raise InputError(f"class '{planted}' has {len(members)} compounds for effect_set {p['effect_set']}, "
                         f"n_changed is {n}", fix="lower n_changed or choose another planted_class")
    return np.sort(rng.choice(np.array(members), size=n, replace=False)), planted


def design_realistic(compounds: list[Compound], n_samples: int, seed: int, p: dict) -> dict:
    """Sample sheet, planted effect and per-sample true abundances (monoisotopic apex heights, 0 when absent).

    ln abundance of compound j in sample s = base_j + sample factor_s + module_{s, m(j)} + sd_j * e_{sj}
    + effect_j * case_s + age term; base ~ N(ln median_abundance, abundance_log_sd), sample factor ~ N(0,
    sample_factor_log_sd), module ~ N(0, module_log_sd) for each of n_modules modules (each compound in one, drawn
    at random), sd_j = biological_log_sd * exp(biological_log_sd_spread * N(0, 1)), e ~ N(0, 1). effect_j =
    +-(ln fold_change + fold_change_log_sd * N(0, 1)) for the changed compounds (sign by effect_direction), 0
    otherwise. Isotopes follow their compound (the whole ion population scales). Per-sample draws come from a
    stream of (seed, sample), so adding samples leaves earlier ones unchanged. Returns what ``design_study``
    returns plus ``changed`` (indices), ``log_fold``, ``biological_log_sd`` and ``module`` (per compound). Raises
    InputError (via ``choose_changed``) when the planted set cannot be drawn, or when ``n_cases`` leaves no case or
    no control.
    """
    n_c = len(compounds)
    rng = stream(seed, 11)
    changed, planted = choose_changed(compounds, rng, p) if int(p["n_changed"]) > 0 else (
        np.empty(0, dtype=np.int64), None)
    base = np.log(p["median_abundance"]) + p["abundance_log_sd"] * rng.standard_normal(n_c)
    bio_sd = p["biological_log_sd"] * np.exp(p["biological_log_sd_spread"] * rng.standard_normal(n_c))
    module = rng.integers(0, max(int(p["n_modules"]), 1), n_c)
    sign = np.ones(len(changed))
    if p["effect_direction"] == "down":
        sign[:] = -1.0
    elif p["effect_direction"] == "mixed":
        sign[1::2] = -1.0
        rng.shuffle(sign)
    effect = np.zeros(n_c)
    effect[changed] = sign * (np.log(p["fold_change"]) + p["fold_change_log_sd"] * rng.standard_normal(len(changed)))
    age_compounds = sorted(rng.choice(n_c, size=min(p["n_age_compounds"], n_c), replace=False).tolist())
    n_cases = n_samples // 2 if p["n_cases"] is None else int(p["n_cases"])
    if not 1 <= n_cases < n_samples:
        raise InputError(f"n_cases is {n_cases} of {n_samples} samples", fix="leave at least one control and one case")
    groups = np.array(["case"] * n_cases + ["control"] * (n_samples - n_cases))
    rng.shuffle(groups)

    def levels(rs: np.random.Generator, case: bool) -> np.ndarray:
        modules = p["module_log_sd"] * rs.standard_normal(max(int(p["n_modules"]), 1))
        level = (base + p["sample_factor_log_sd"] * rs.standard_normal() + modules[module]
                 + bio_sd * rs.standard_normal(n_c))
        return level + effect if case else level

    samples, abundance, present = _draw_samples(groups, n_c, age_compounds, p, lambda s: stream(seed, 12, s), levels)
    return {"samples": samples, "abundance": abundance, "present": present, "planted_class": planted,
            "changed": changed, "log_fold": effect, "biological_log_sd": bio_sd, "module": module,
            "age_compounds": [compounds[i].compound_id for i in age_compounds],
            "age_compound_names": [compounds[i].name for i in age_compounds]}
