"""The spike-in mode's library: MGF records read verbatim, and which of them can be spiked into a run.

A record can be spiked when it is a positive-mode [M+H]+ spectrum of a known structure (INCHIKEY, a neutral
FORMULA whose [M+H]+ m/z is the record's PEPMASS within 10 ppm), has a chemical class (COMPOUND_CLASS, a ChemOnt
path; needed only to plant a class effect), a licence that permits commercial use (a record without LICENSE is
taken as the user's own), a precursor inside the background run's m/z range and at least ``MIN_FRAGMENTS`` peaks
below the precursor. A record without IONMODE is taken as positive (its ADDUCT says [M+H]+). A record without
ADDUCT is not used, even when its PEPMASS is the [M+H]+ m/z of its formula, so that a study built from MassBank
stays as before (61 such records of the dev set would join). :func:`usable_records` counts the records failing
each requirement, so that a library refused as too small says why (:func:`require_structures`).
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyopenms as oms

from ms2study.core.atomic import write_text
from ms2study.core.errors import InputError
from ms2study.simulate.formula_mass import mono_weight

PROTON = 1.007276467
COMMERCIAL_LICENSES = ("CC BY", "CC BY-SA", "CC0", "DL-DE/BY-2-0")
MIN_FRAGMENTS = 3               # a reference spectrum needs this many peaks below the precursor to be usable
PRECURSOR_PPM = 10.0
_MH = {"[M+H]+", "[M+H]1+", "[M+H]", "M+H", "M+H+"}

# requirement -> (what a record lacks when it fails it, what to do about it); in the order they are checked.
REQUIREMENTS = {
    "ion_mode": ("IONMODE positive", "the spike-in mode is positive-mode only: pass positive-mode records"),
    "license": (f"a LICENSE permitting commercial use ({', '.join(COMMERCIAL_LICENSES)}; none: your own record)",
                "drop LICENSE from your own records or set it to CC0"),
    "adduct": ("ADDUCT [M+H]+ (and CHARGE 1, when given)",
               "add ADDUCT=[M+H]+ to the [M+H]+ records"),
    "inchikey": ("an INCHIKEY", "add INCHIKEY= (e.g. RDKit's Chem.MolToInchiKey of the SMILES)"),
    "formula": ("a neutral FORMULA", "add FORMULA= (the neutral molecule's, e.g. C6H12O6)"),
    "compound_class": ("a COMPOUND_CLASS (ChemOnt path, e.g. from ClassyFire)",
                       "add COMPOUND_CLASS= or pass --n-changed 0 (no planted class effect)"),
    "precursor_mz": (f"a PEPMASS within {PRECURSOR_PPM:g} ppm of the formula's [M+H]+ m/z",
                     "check FORMULA and PEPMASS (PEPMASS must be the [M+H]+ precursor m/z)"),
    "mz_range": ("a precursor inside the background's m/z range ({lo:.0f}-{hi:.0f}, 5 Da kept free above)",
                 "pass a background run that covers the library's m/z range"),
    "fragments": (f"at least {MIN_FRAGMENTS} peaks below the precursor", "pass records with fragment peaks"),
}


@dataclass
class Record:
    """One MGF entry: ``fields`` (upper-case keys -> text), ``mz``/``intensity`` (float64), ``text`` verbatim."""
    fields: dict[str, str]
    mz: np.ndarray
    intensity: np.ndarray
    text: str

    @property
    def block(self) -> str:
        """The first InChIKey block (the 2D skeleton): what 'the same compound' means here."""
        return self.fields.get("INCHIKEY", "").split("-")[0]


def read_mgf_records(path: Path) -> list[Record]:
    """Every ``BEGIN IONS`` ... ``END IONS`` entry of an MGF (``.gz`` too), verbatim text kept for rewriting.

    Raises InputError naming ``path`` (and the --library option) when it is missing, not a file, unreadable or
    holds no entry."""
    path = Path(path)
    if not path.is_file():
        raise InputError("the --library file " + ("was not found" if not path.exists() else "is not a file"),
                         file=str(path),
                         fix="pass --library LIB.mgf, an MGF spectral library (.mgf or .mgf.gz), e.g. MassBank's")
    opener = gzip.open if path.suffix == ".gz" else open
    records, lines, fields, peaks = [], None, {}, []
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                s = line.strip()
                if s == "BEGIN IONS":
                    lines, fields, peaks = [s], {}, []
                elif lines is None:
                    continue
                elif s == "END IONS":
                    lines.append(s)
                    arr = np.array(peaks, dtype=np.float64).reshape(-1, 2)
                    records.append(Record(fields, arr[:, 0], arr[:, 1], "\n".join(lines)))
                    lines = None
                else:
                    lines.append(s)
                    if "=" in s and not s[0].isdigit():
                        key, _, value = s.partition("=")
                        fields[key.strip().upper()] = value.strip()
                    elif len(parts := s.split()) >= 2 and _number(parts[0]) and _number(parts[1]):
                        peaks.append((float(parts[0]), float(parts[1])))
    except (OSError, EOFError, zlib.error) as err:  # a truncated or corrupt .gz, a permission error
        raise InputError(f"cannot read the --library file ({err})", file=str(path),
                         fix="pass a readable MGF file (.mgf, or .mgf.gz compressed with gzip)") from err
    if not records:
        raise InputError("the --library file holds no BEGIN IONS ... END IONS entry", file=str(path),
                         fix="pass an MGF spectral library")
    return records


def _number(text: str) -> bool:
    return re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text) is not None


def _positive(record: Record) -> bool:
    """IONMODE positive, or no IONMODE (then the [M+H]+ check decides)."""
    mode = record.fields.get("IONMODE", "").strip().lower()
    return not mode or mode.startswith("pos")


def _licensed(record: Record) -> bool:
    """A licence permitting commercial use, or no LICENSE field (the user's own record)."""
    text = record.fields.get("LICENSE")
    return text is None or not text.strip() or text.strip().upper() in COMMERCIAL_LICENSES


def allowed(record: Record) -> bool:
    """Positive mode (or no IONMODE) and a licence that permits commercial use (or none): may be written."""
    return _positive(record) and _licensed(record)


def is_mh(record: Record) -> bool:
    """An [M+H]+ record: ADDUCT [M+H]+ (or [M+H]1+, M+H), CHARGE, when given, 1 (1+, +1, 1)."""
    f = record.fields
    charge = f.get("CHARGE", "1").strip().replace("+", "")
    return charge in ("1", "") and f.get("ADDUCT", "").replace(" ", "") in _MH


def chemical_class(record: Record) -> str:
    """The ChemOnt path without its CHEMONTID prefix ("Organic compounds; Alkaloids and derivatives")."""
    parts = [p.strip() for p in record.fields.get("COMPOUND_CLASS", "").split(";")]
    return "; ".join(p for p in parts if p and not p.upper().startswith("CHEMONTID"))


@lru_cache(maxsize=65536)
def mh_mz(formula: str) -> float | None:
    """Monoisotopic [M+H]+ m/z of a neutral formula; None when it is empty or pyOpenMS cannot parse it."""
    if not formula or not re.fullmatch(r"[A-Za-z0-9]+", formula):  # charges ("+", "-") and blanks: not neutral
        return None
    try:
        return mono_weight(oms.EmpiricalFormula(formula)) + PROTON  # getMonoWeight's last bit varies by process
    except RuntimeError:  # pyOpenMS's parse error of an unknown element
        return None


def _pepmass(record: Record) -> float | None:
    try:
        return float(record.fields.get("PEPMASS", "").split()[0])
    except (ValueError, IndexError):
        return None


def usable_records(records: list[Record], mz_range: tuple[float, float],
                   need_class: bool = True) -> tuple[list[Record], Counter]:
    """The records fit to spike (module docstring; ``mz_range``: the background's m/z range, 5 Da kept free above
    for isotopes; ``need_class``: require COMPOUND_CLASS) and, per key of ``REQUIREMENTS``, how many records fail
    it (a record can fail several; m/z range and fragments are checked only when the precursor is known)."""
    out, failed = [], Counter()
    for r in records:
        f = r.fields
        fails = [key for key, ok in (
            ("ion_mode", _positive(r)), ("license", _licensed(r)), ("adduct", is_mh(r)), ("inchikey", bool(r.block)),
            ("formula", mh_mz(f.get("FORMULA", "")) is not None),
            ("compound_class", bool(chemical_class(r)) or not need_class)) if not ok]
        mz, pepmass = mh_mz(f.get("FORMULA", "")), _pepmass(r)
        if mz is not None:
            if pepmass is None or abs(mz - pepmass) > PRECURSOR_PPM * 1e-6 * mz:
                fails.append("precursor_mz")
            elif not mz_range[0] + 1.0 <= mz <= mz_range[1] - 5.0:
                fails.append("mz_range")
            elif np.count_nonzero(r.mz < mz - 1.6) < MIN_FRAGMENTS:
                fails.append("fragments")
        failed.update(fails)
        if not fails:
            out.append(r)
    return out, failed


def require_structures(usable: list[Record], failed: Counter, n_records: int, n_compounds: int,
                       library_path: Path, mz_range: tuple[float, float]) -> None:
    """Raise InputError naming ``library_path`` when ``usable`` holds fewer than ``n_compounds`` structures (first
    InChIKey blocks): how many of the ``n_records`` records failed each requirement and what to do."""
    n_structures = len({r.block for r in usable})
    if n_structures >= n_compounds:
        return
    counts = "; ".join(f"{n} lack{'s' if n == 1 else ''} {REQUIREMENTS[key][0].format(lo=mz_range[0], hi=mz_range[1])}"
                       for key, n in failed.most_common())
    fixes = [REQUIREMENTS[key][1] for key, _ in failed.most_common()]
    raise InputError(
        f"only {n_structures} structures of the library are usable ({len(usable)} of {n_records} records) and "
        f"{n_compounds} are asked for (--compounds); records failing each requirement (a record can fail several): "
        f"{counts or 'none'}", file=str(library_path),
        fix="; ".join(fixes[:3] + [("or " if fixes else "") + "pass a larger library"
                                   + (f" or --compounds {n_structures}" if n_structures else "")]))


def write_study_library(path: Path, records: list[Record], compounds: list, library_size: int | None,
                        rs: np.random.Generator) -> int:
    """Write the spike-in study's library (``simulate.spikein.simulate_spikein`` says what it holds) from the input
    ``records`` and the spiked ``compounds`` (each with ``block``, ``query``, ``library`` and ``in_library``): the
    library records of compounds left in, then the other allowed records of structures not spiked (at most
    ``library_size`` in all, drawn with ``rs``); returns the number of records written."""
    spiked_blocks = {c.block for c in compounds}
    removed = {id(c.query) for c in compounds} - {id(r) for c in compounds for r in c.library}
    keep_spiked = [r for c in compounds if c.in_library for r in c.library]
    others = [r for r in records if allowed(r) and r.block not in spiked_blocks and id(r) not in removed]
    if library_size is not None and len(others) + len(keep_spiked) > library_size:
        n = max(library_size - len(keep_spiked), 0)
        others = [others[i] for i in np.sort(rs.choice(len(others), n, replace=False))]
    write_text("\n\n".join(r.text for r in keep_spiked + others) + "\n", path)
    return len(keep_spiked) + len(others)
