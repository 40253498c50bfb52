"""In-silico MS/MS (ms2study.simulate.fragment, its ions from ms2study.simulate.ions): exact masses, plausible
fragments, isomers, determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyopenms as oms
import pytest

from ms2study.core.cleaning import clean_peaks
from ms2study.kernels import cosine
from ms2study.simulate import fragment, ions

LEUCINE = "CC(C)C[C@H](N)C(=O)O"
ISOLEUCINE = "CC[C@H](C)[C@H](N)C(=O)O"
NORLEUCINE = "CCCC[C@H](N)C(=O)O"
GLUCOSE = "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O"
GALACTOSE = "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@H]1O"
CARNITINE = "C[N+](C)(C)C[C@@H](O)CC(=O)[O-]"
CHOLINE = "C[N+](C)(C)CCO"
ADENOSINE = "Nc1ncnc2c1ncn2[C@@H]1O[C@H](CO)[C@@H](O)[C@H]1O"
G6P = "O=P(O)(O)OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O"


def greedy_cosine(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], tol: float = 0.01) -> float:
    """Greedy cosine of two (mz, intensity) spectra with the pipeline's scoring kernel (matchms semantics)."""
    return cosine.cosine_pair(a[0], a[1].astype(np.float64), b[0], b[1].astype(np.float64), tol, 0.0, 1.0, 0.0,
                               False)[0]


def test_leucine_masses_are_exact():
    assert ions.precursor_mz(LEUCINE) == pytest.approx(132.101905, abs=1e-5)
    assert ions.formula(LEUCINE) == "C6H13NO2"
    assert ions.inchikey(LEUCINE) == "ROHFNLRQFUQHCH-YFKPBYRVSA-N"
    mz, inten = fragment.predict_spectrum(LEUCINE)
    assert mz.dtype == np.float64 and inten.dtype == np.float32
    assert np.all(np.diff(mz) > 0) and inten.max() == pytest.approx(1.0)
    # loss of HCOOH gives the immonium ion C5H12N+, the base peak of leucine
    k = np.argmin(np.abs(mz - 86.0964))
    assert abs(mz[k] - 86.096426) < 1e-4
    assert inten[k] == pytest.approx(1.0)


def test_every_fragment_mass_matches_openms_formula_mass():
    for smiles in (LEUCINE, CARNITINE, ADENOSINE, G6P, CHOLINE):
        for formula, mz, _ in fragment.predict_fragments(smiles):
            expected = oms.EmpiricalFormula(formula).getMonoWeight() - ions.ELECTRON_MASS
            assert mz == pytest.approx(expected, abs=2e-5), (smiles, formula)  # the two element tables differ ~1e-6


def test_ion_formula_holds_the_atoms_the_precursor_mz_weighs():
    # the isotope pattern of a simulated compound comes from this formula, so it must be the precursor ion's
    expected = {LEUCINE: "C6H14NO2", CARNITINE: "C7H16NO3", CHOLINE: "C5H14NO", G6P: "C6H14O9P"}
    for smiles, ion in expected.items():
        assert ions.ion_formula(smiles) == ion
        weight = oms.EmpiricalFormula(ion).getMonoWeight() - ions.ELECTRON_MASS
        assert ions.precursor_mz(smiles) == pytest.approx(weight, abs=2e-5)
    with pytest.raises(ValueError, match="adduct"):
        ions.ion_formula(CHOLINE, "[M+H]+")


def test_charge_states_and_adducts():
    assert ions.default_adduct(CHOLINE) == "[M]+"
    assert ions.precursor_mz(CHOLINE) == pytest.approx(104.10699, abs=1e-4)
    # a zwitterion is a neutral molecule seen as [M+H]+
    assert ions.default_adduct(CARNITINE) == "[M+H]+"
    assert ions.precursor_mz(CARNITINE) == pytest.approx(162.11247, abs=1e-4)
    with pytest.raises(ValueError, match="adduct"):
        ions.precursor_mz(CHOLINE, "[M+H]+")
    with pytest.raises(ValueError, match="not supported"):
        ions.precursor_mz(LEUCINE, "[M+Na]+")
    with pytest.raises(ValueError, match="parse"):
        fragment.predict_spectrum("C1CC")


def test_characteristic_fragments():
    def has(smiles: str, mz: float, min_rel: float) -> bool:
        m, i = fragment.predict_spectrum(smiles)
        k = np.argmin(np.abs(m - mz))
        return abs(m[k] - mz) < 1e-3 and i[k] >= min_rel

    assert has(CARNITINE, 103.0390, 0.3)    # loss of trimethylamine
    assert has(CARNITINE, 60.0808, 0.2)     # trimethylammonium
    assert has(ADENOSINE, 136.0618, 0.9)    # protonated adenine after the N-glycosidic cleavage
    assert has(G6P, 163.0601, 0.05)         # loss of H3PO4
    assert has(G6P, 243.0264, 0.3)          # loss of H2O


def test_all_fragments_lie_below_the_precursor():
    for smiles in (LEUCINE, CARNITINE, ADENOSINE, G6P):
        mz, inten = fragment.predict_spectrum(smiles, max_peaks=25)
        assert 3 <= mz.size <= 25
        assert mz.max() <= ions.precursor_mz(smiles) + 1e-6
        assert inten.min() >= 0.005


@pytest.mark.parametrize("pair", [(LEUCINE, ISOLEUCINE), (LEUCINE, NORLEUCINE), (GLUCOSE, GALACTOSE)])
def test_isomers_are_related_but_different(pair):
    a, b = pair
    precursor = ions.precursor_mz(a)
    assert precursor == pytest.approx(ions.precursor_mz(b), abs=1e-9)
    sa = clean_peaks(*fragment.predict_spectrum(a), precursor)
    sb = clean_peaks(*fragment.predict_spectrum(b), precursor)
    cos = greedy_cosine(sa, sb)
    assert 0.4 < cos < 0.99
    assert greedy_cosine(sa, sa) == pytest.approx(1.0)


def test_prediction_is_deterministic_across_processes():
    code = (
        "from ms2study.simulate import fragment\n"
        f"mz, i = fragment.predict_spectrum({ADENOSINE!r})\n"
        "print(repr(mz.tolist()), repr(i.tolist()))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(fragment.__file__).resolve().parents[2]))
    outputs = set()
    for hash_seed in ("1", "2"):
        env["PYTHONHASHSEED"] = hash_seed
        outputs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   check=True).stdout)
    mz, i = fragment.predict_spectrum(ADENOSINE)
    assert outputs == {f"{mz.tolist()!r} {i.tolist()!r}\n"}
