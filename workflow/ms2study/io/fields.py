"""Metadata fields of spectrum-file entries (MGF / MSP / GNPS JSON): key aliases, precursor m/z, charge, ion mode.

Every reader stores an entry's metadata as ``{normalised key: raw text}`` (``norm_key``: upper case, spaces and
underscores removed); this module turns those texts into values the same way for library and query spectra:
``first_field`` (first present alias of a field, missing tokens skipped), ``precursor_of`` (precursor m/z with
the decimal-comma rule), ``charge_of`` and ``ion_mode_of``. Pure text handling: imports only ms2study.core.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ms2study.core.missing import LIBRARY_PLACEHOLDERS, is_missing

# Source keys (upper-cased, with spaces/underscores removed) -> metadata field; first present key wins.
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    # FEATURE_ID (MZmine's MGF export) and SCANS (GNPS feature-based molecular networking) after the library ids
    "library_id": ("SPECTRUMID", "DB#", "DBNUMBER", "ACCESSION", "NIST#", "TITLE", "FEATUREID", "SCANS"),
    "name": ("NAME", "COMPOUNDNAME", "TITLE"),
    "inchikey": ("INCHIKEY", "INCHIKEYSMILES", "INCHIKEYINCHI", "INCHIAUX"),
    "smiles": ("SMILES",),
    "formula": ("FORMULA", "FORMULASMILES", "MOLECULARFORMULA"),
    "adduct": ("ADDUCT", "PRECURSORTYPE", "PRECURSORADDUCT"),
    "ion_mode": ("IONMODE", "POLARITY", "IONPOLARITY", "SCANPOLARITY"),
    "ionization": ("IONIZATION", "IONISATION"),
    "license": ("LICENSE", "LICENCE"),
    "precursor_mz": ("PRECURSORMZ", "PEPMASS", "PRECURSOR", "PRECURSORM/Z"),  # the last: "Precursor m/z:"
    "charge": ("CHARGE", "PRECURSORCHARGE"),
    "compound_class": ("COMPOUNDCLASS", "ONTOLOGY"),
    "instrument_type": ("INSTRUMENTTYPE", "INSTRUMENT", "SOURCEINSTRUMENT"),
    "collision_energy": ("COLLISIONENERGY",),
}

# Ion-mode codes of flat spectra and library indexes (0: unknown).
ION_MODE_CODE = {"positive": 1, "negative": -1}

# a byte-order mark too: one inside a file (files joined with cat) must not rename its record's first key
_KEY_DROP = str.maketrans("", "", " \t\r\n\x0b\x0c_\ufeff")


def norm_key(key: str) -> str:
    """Upper case, whitespace and underscores removed: "Ion_mode" -> "IONMODE", "Num Peaks" -> "NUMPEAKS"."""
    return key.strip().upper().translate(_KEY_DROP)


def first_field(fields: dict[str, str], field_name: str) -> str | None:
    """Stripped text of the first alias of ``field_name`` (a ``KEY_ALIASES`` key) that is present and not missing
    (``core.missing``: a missing token such as empty, N/A, NA, NaN, None, null, -, or the library placeholder
    "unknown"); None when there is none."""
    for key in KEY_ALIASES[field_name]:
        value = fields.get(key)
        if value is not None and not is_missing(value, LIBRARY_PLACEHOLDERS):
            return value.strip()
    return None


# MS-DIAL's MSP libraries carry the source record's id in free text: "Comment: DB#=MSBNK-...; origin=MassBank"
# (MoNA's: Comments: "SMILES=..." "accession=...")
_COMMENT_ID_RE = re.compile(r'(?:^|[;,\s"])(?:DB#|ACCESSION|SPECTRUMID)\s*[=:]\s*([^;,\s"]+)', re.IGNORECASE)


def entry_id(fields: dict[str, str], source_file: str, entry: int) -> str:
    """The entry's id (first of SPECTRUMID, DB#, ACCESSION, NIST#, TITLE, FEATURE_ID, SCANS; else a ``DB#=`` /
    ``ACCESSION=`` / ``SPECTRUMID=`` inside a ``Comment`` line, as MS-DIAL's MSP libraries write it) or
    ``"<file name>:<entry>"``."""
    found = first_field(fields, "library_id")
    if found:
        return found
    match = _COMMENT_ID_RE.search(fields.get("COMMENT") or fields.get("COMMENTS") or "")
    return match.group(1) if match else f"{Path(source_file).name}:{entry}"


def float_or_none(text: str) -> float | None:
    """``float(text)``, or None when the text is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


_DECIMAL_COMMA_RE = re.compile(r"^[+-]?\d+,\d+$")


def precursor_text(fields: dict[str, str]) -> tuple[str | None, str | None]:
    """(key, text) of the first present, non-placeholder precursor field of PRECURSORMZ / PEPMASS / PRECURSOR,
    the text stripped; (None, None) when there is none."""
    for candidate in KEY_ALIASES["precursor_mz"]:
        value = fields.get(candidate)
        if value is not None and not is_missing(value, LIBRARY_PLACEHOLDERS):
            return candidate, value.strip()
    return None, None


def stated_decimals(fields: dict[str, str]) -> int | None:
    """How many decimals the entry's precursor m/z is written with ("181.07" -> 2, "181" -> 0, a decimal comma
    counted alike); None without a precursor field or for a number in exponent form."""
    _, text = precursor_text(fields)
    if not text:
        return None
    token = text.split()[0]
    if "e" in token.lower():
        return None
    for mark in (".", ","):
        if mark in token:
            return len(token.split(mark, 1)[1])
    return 0


def looks_electron_ionisation(fields: dict[str, str]) -> bool:
    """Whether an entry's fields (upper-case keys) name electron ionisation: IONIZATION or INSTRUMENTTYPE holding
    EI (or GC-EI), a NAME with MS-DIAL/RIKEN's "; EI-" tag, or a 70 eV COLLISIONENERGY with a RETENTIONINDEX."""
    def words(key: str) -> str:
        return str(fields.get(key) or "").upper()
    return (any(t in ("EI", "EI+") or t.startswith("GC-EI") for t in words("IONIZATION").replace(";", " ").split())
            or "GC-EI" in words("INSTRUMENTTYPE") or "; EI-" in words("NAME")
            or ("70" in words("COLLISIONENERGY") and "EV" in words("COLLISIONENERGY") and bool(fields.get(
                "RETENTIONINDEX"))))


def precursor_of(fields: dict[str, str]) -> tuple[float | None, str, str]:
    """Precursor m/z of an entry -> ``(value, problem, note)``.

    The first present key of PRECURSORMZ / PEPMASS / PRECURSOR is read; only its first whitespace-separated
    token is the m/z (MGF ``PEPMASS=mz [intensity]``). A decimal comma (``281,2013306``: one comma, no dot,
    digits on both sides) is read as a decimal point and explained in ``note``; any other comma is refused
    as ambiguous. ``value`` is None when there is no finite m/z > 0, and ``problem`` then says why (missing,
    not a number, 0, negative, not finite, ambiguous comma); otherwise ``problem`` is "".
    """
    key, text = precursor_text(fields)
    if key is None or text is None:
        # a field that looks like a precursor but is not read (trial AF: "Precursor m/z:" went unnamed)
        near = [k for k in fields if "PRECURSOR" in k and k not in KEY_ALIASES["precursor_mz"]
                and not k.startswith(("PRECURSORTYPE", "PRECURSORCHARGE", "PRECURSORINTENSITY"))]
        if looks_electron_ionisation(fields):  # trial AR: RIKEN's GC-EI records invited adding a precursor
            return None, ("an electron-ionisation (GC-MS) spectrum: it has no precursor ion, and an LC-MS/MS library "
                          "search cannot identify it (search it against a GC-EI library, e.g. with its retention "
                          "index)"), ""
        return None, ("no precursor m/z given (PEPMASS= in MGF, PrecursorMZ: in MSP, Precursor_MZ in JSON)"
                      + (f"; field(s) {', '.join(near[:3])} not read as one" if near else "")), ""
    token = text.split()[0]
    note = ""
    if "," in token:
        if not _DECIMAL_COMMA_RE.match(token):
            return None, (f"{key} '{text}' is ambiguous (a comma that is not a single decimal comma): "
                          f"write the m/z with a decimal point, e.g. 281.2013"), ""
        value_f = float(token.replace(",", "."))
        note = f"{key} '{text}' has a decimal comma: read as {value_f!r}"
    else:
        parsed = float_or_none(token)
        if parsed is None:
            return None, f"{key} '{text}' is not a number", ""
        value_f = parsed
    if not math.isfinite(value_f):
        return None, f"{key} '{text}' is not finite", ""
    if value_f == 0:
        return None, f"{key} is 0", ""
    if value_f < 0:
        return None, f"{key} '{text}' is negative", ""
    return value_f, "", note


_CHARGE_RE = re.compile(r"^\s*([+-]?)(\d+)\s*([+-]?)")


def _charge_and_sign(text: str | None) -> tuple[int | None, bool]:
    """(charge, whether a sign was written): "2+" -> (2, True), "-1" -> (-1, True), "1" -> (1, False)."""
    if not text:
        return None, False
    m = _CHARGE_RE.match(text)
    if not m:
        return None, False
    signs = m.group(1) + m.group(3)
    sign = -1 if "-" in signs else 1
    return sign * int(m.group(2)), bool(signs)


def charge_of(text: str | None) -> int | None:
    """Signed charge of a CHARGE text ("2+" -> 2, "1-" -> -1, "-1" -> -1, "1" -> 1); None when unreadable."""
    return _charge_and_sign(text)[0]


def _mode_from_text(text: str | None) -> str | None:
    """'positive' / 'negative' from a polarity text: Positive, POS, P, +, ESI+, neg, N, -, APCI- ... else None."""
    t = (text or "").strip().lower()
    if not t:
        return None
    if "pos" in t or t in ("p", "+", "+1", "1+"):
        return "positive"
    if "neg" in t or t in ("n", "-", "-1", "1-"):
        return "negative"
    if t.endswith("+"):
        return "positive"
    if t.endswith("-"):
        return "negative"
    return None


def ion_mode_sources(fields: dict[str, str]) -> list[tuple[str, str]]:
    """Every field that states an ion mode, as (its text, the mode), in ``ion_mode_of``'s order of trust:
    ``IONMODE``-like fields, ``Ionization``, a signed ``CHARGE``, the adduct's trailing sign."""
    out = []
    for name in ("ion_mode", "ionization"):
        text = first_field(fields, name)
        mode = _mode_from_text(text)
        if mode is not None:
            out.append((f"{name} {text}", mode))
    text = first_field(fields, "charge")
    charge, signed = _charge_and_sign(text)
    if charge and signed:
        out.append((f"CHARGE={text}", "positive" if charge > 0 else "negative"))
    adduct = first_field(fields, "adduct")
    tail = adduct.rstrip(" *")[-1:] if adduct else ""
    if tail in ("+", "-"):
        out.append((f"ADDUCT={adduct}", "positive" if tail == "+" else "negative"))
    return out


def ion_mode_conflict(fields: dict[str, str]) -> str | None:
    """A sentence when the fields of an entry state opposite ion modes (e.g. ``CHARGE=1-`` beside
    ``ADDUCT=[M+H]+``), naming them and the mode ``ion_mode_of`` takes; None when they agree."""
    sources = ion_mode_sources(fields)
    if len({mode for _, mode in sources}) < 2:
        return None
    said = ", ".join(f"{text} ({mode})" for text, mode in sources)
    return f"{said} disagree: searched as {sources[0][1]} (from {sources[0][0]}); correct the entry if that is wrong"


def ion_mode_of(fields: dict[str, str]) -> str | None:
    """Ion mode of an entry, the same for library and query spectra: "positive", "negative" or None.

    In order, the first that tells: ``IONMODE`` / ``Ion_mode`` / ``POLARITY`` (Positive, P, +, ...);
    ``Ionization`` (ESI+, APCI-, positive, ...); a signed ``CHARGE`` (``1+``, ``-1``, ``2-``); the adduct's
    trailing sign (``[M-H]-``); an unsigned positive ``CHARGE`` (MGF convention: positive). None when none
    of these says anything (e.g. ``CHARGE=0`` alone).
    """
    sources = ion_mode_sources(fields)
    if sources:
        return sources[0][1]
    charge, _ = _charge_and_sign(first_field(fields, "charge"))
    if charge and charge > 0:
        return "positive"
    return None
