"""Monoisotopic masses and coarse isotope patterns of formulas, the same to the last bit in every process.

pyOpenMS's ``EmpiricalFormula`` keeps its elements in a map ordered by the elements' addresses in memory, and
``getMonoWeight`` adds them in that order. The addresses depend on the heap's layout when pyOpenMS first builds its
element table, which differs between processes (with PYTHONHASHSEED, the files read before, even the length of a
path), so the last bit of a mass did, and one seed of ``ms2study simulate --background`` gave two sets of files.
Here the elements' masses are summed exactly (``math.fsum``), so in no order. The fine isotope pattern the spike-in
mode takes from pyOpenMS came out the same in both layouts. The synthetic mode's ``CoarseIsotopePatternGenerator``
convolves in the address order too (a synthetic study made under another heap layout had different mzML files, its
isotope ratios off by up to 6e-8): ``coarse_isotope_distribution`` convolves in alphabetical order instead.
"""

from __future__ import annotations

import math

import numpy as np
import pyopenms as oms


def mono_weight(formula: oms.EmpiricalFormula) -> float:
    """Monoisotopic mass of ``formula`` (charge ignored: the neutral formula's): each element's count x its
    monoisotopic mass, summed with ``math.fsum`` (exact, so in no order)."""
    db = oms.ElementDB()
    return math.fsum(n * db.getElement(symbol).getMonoWeight()
                     for symbol, n in sorted(formula.getElementalComposition().items()))



def coarse_isotope_distribution(formula: str, peaks: int = 4) -> np.ndarray:
    """Probabilities of the first ``peaks`` nominal isotopologues (M, M+1, ...) of ``formula`` (text pyOpenMS
    reads, e.g. "C6H14NO2+"), shape (peaks,): each element's natural isotope abundances (pyOpenMS ``ElementDB``)
    binned by nominal mass offset and raised to its count by repeated convolution, the elements combined in
    alphabetical order. Keeping only the first ``peaks`` bins at every step is exact for those bins (offsets only
    add). pyOpenMS's ``CoarseIsotopePatternGenerator`` does the same in the order of the elements' addresses in
    memory, which differs between processes; its results differed by up to 6e-8 between two heap layouts."""
    db = oms.ElementDB()
    total = np.zeros(peaks)
    total[0] = 1.0
    for symbol, count in sorted(oms.EmpiricalFormula(formula).getElementalComposition().items()):
        isotopes = db.getElement(symbol).getIsotopeDistribution().getContainer()
        lightest = min(p.getMZ() for p in isotopes)
        one = np.zeros(peaks)
        for p in isotopes:
            offset = round(p.getMZ() - lightest)
            if offset < peaks:
                one[offset] += p.getIntensity()
        for _ in range(int(count)):
            total = np.convolve(total, one)[:peaks]
    return total
