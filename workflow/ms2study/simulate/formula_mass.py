"""Monoisotopic masses of formulas from pyOpenMS, the same to the last bit in every process.

pyOpenMS's ``EmpiricalFormula`` keeps its elements in a map ordered by the elements' addresses in memory, and
``getMonoWeight`` adds them in that order. The addresses depend on the heap's layout when pyOpenMS first builds its
element table, which differs between processes (with PYTHONHASHSEED, the files read before, even the length of a
path), so the last bit of a mass did, and one seed of ``ms2study simulate --background`` gave two sets of files.
Here the elements' masses are summed exactly (``math.fsum``), so in no order. The fine isotope pattern the spike-in
mode takes from pyOpenMS came out the same in both layouts. Not fixed here: the synthetic mode's
``CoarseIsotopePatternGenerator`` convolves in the address order too, and a synthetic study (--samples 4 --seed 3)
made under another heap layout had different mzML files.
"""

from __future__ import annotations

import math

import pyopenms as oms


def mono_weight(formula: oms.EmpiricalFormula) -> float:
    """Monoisotopic mass of ``formula`` (charge ignored: the neutral formula's): each element's count x its
    monoisotopic mass, summed with ``math.fsum`` (exact, so in no order)."""
    db = oms.ElementDB()
    return math.fsum(n * db.getElement(symbol).getMonoWeight()
                     for symbol, n in sorted(formula.getElementalComposition().items()))

