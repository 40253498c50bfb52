"""What instrument a run says it was acquired on: the model name and the mass analyzers of the mzML (or mzXML) header.

``read_instrument`` loads only the file's metadata with pyOpenMS (``PeakFileOptions.setMetadataOnly``: no spectrum
is decoded, a few milliseconds for a 4 MB run) and returns the instrument configuration as the file states it
(``RunInstrument``): mzML ``instrumentConfiguration`` (model cvParam, e.g. MS:1002533 "TripleTOF 6600", and each
``analyzer`` component's type, e.g. MS:1000084 "time-of-flight"), mzXML ``msInstrument`` (msModel, msMassAnalyzer,
as OpenMS reads them). Nothing is inferred from the model name: a file whose header names no analyzer has none here,
and the callers must say "not stated", never guess. What the shared test runs carry (pyOpenMS 3.6): the SCIEX
TripleTOF 6600 excerpts name quadrupole, quadrupole, time-of-flight; the Q Exactive QC excerpts (converted by
msconvert) name one "fourier transform ion cyclotron resonance" analyzer; runs written by the simulator, and some
converters, name neither model nor analyzer. May import ``ms2study.core`` only (besides pyOpenMS).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pyopenms as oms

log = logging.getLogger(__name__)

_TYPE = oms.MassAnalyzer.AnalyzerType
# pyOpenMS analyzer types as the PSI-MS controlled vocabulary names them (the words a chemist reads in the mzML).
ANALYZER_NAMES = {
    _TYPE.QUADRUPOLE: "quadrupole", _TYPE.TOF: "time-of-flight", _TYPE.ORBITRAP: "orbitrap",
    _TYPE.FOURIERTRANSFORM: "fourier transform ion cyclotron resonance", _TYPE.IT: "ion trap",
    _TYPE.PAULIONTRAP: "quadrupole ion trap", _TYPE.LIT: "linear ion trap",
    _TYPE.RADIALEJECTIONLINEARIONTRAP: "radial ejection linear ion trap",
    _TYPE.AXIALEJECTIONLINEARIONTRAP: "axial ejection linear ion trap", _TYPE.SECTOR: "magnetic sector",
    _TYPE.ESA: "electrostatic energy analyzer", _TYPE.CYCLOTRON: "cyclotron", _TYPE.SWIFT: "stored waveform",
    _TYPE.IONSTORAGE: "ion storage",
}
TIME_OF_FLIGHT = "time-of-flight"
_READERS = {".mzml": oms.MzMLFile, ".mzxml": oms.MzXMLFile}


@dataclass(frozen=True)
class RunInstrument:
    """A run's instrument as its file states it. ``model``: the instrument model's name (None: not stated);
    ``analyzers``: the mass analyzers in the file's component order (empty: not stated)."""

    model: str | None
    analyzers: tuple[str, ...]

    @property
    def time_of_flight(self) -> bool:
        """True when one of the stated analyzers is a time-of-flight analyzer (a QTOF, a TOF); False when none is or
        none is stated."""
        return TIME_OF_FLIGHT in self.analyzers

    def analyzers_text(self) -> str | None:
        """The analyzers as one line ("quadrupole, quadrupole, time-of-flight"); None when none is stated. An Orbitrap
        instrument (its model names Orbitrap or Exactive) whose file states a Fourier-transform ion cyclotron
        resonance analyzer, as converters write Thermo's Orbitrap, gets that said beside it (trial AC: a Q Exactive
        shown as FT-ICR would be copied into a Methods section)."""
        if not self.analyzers:
            return None
        text = ", ".join(self.analyzers)
        model = (self.model or "").lower()
        if ANALYZER_NAMES[_TYPE.FOURIERTRANSFORM] in self.analyzers and ("orbitrap" in model or "exactive" in model):
            text += " (as converters write an Orbitrap; the instrument's analyzer is an Orbitrap)"
        return text


NOT_STATED = RunInstrument(None, ())


def _reader(path: Path):
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    for suffix, reader in _READERS.items():
        if name.endswith(suffix):
            return reader()
    return None


def read_instrument(path: str | os.PathLike) -> RunInstrument:
    """The model and mass analyzers a run's header states (``RunInstrument``), read without its spectra.

    ``path``: an mzML or mzXML file (optionally .gz). A file of another type, a missing or unreadable file, or a
    header without an instrument gives ``NOT_STATED`` (model None, no analyzers) and, for a file that cannot be read,
    a logged warning: the detect stage has already refused unreadable runs with a message, and the instrument is
    a note for the report, never a reason to stop. Analyzer types unknown to ``ANALYZER_NAMES`` are named by their
    pyOpenMS enum name in lower case; "mass analyzer type" without a type (ANALYZERNULL) is left out."""
    path = Path(path)
    reader = _reader(path)
    if reader is None or not path.is_file():
        return NOT_STATED
    options = reader.getOptions()
    options.setMetadataOnly(True)
    reader.setOptions(options)
    exp = oms.MSExperiment()
    try:
        reader.load(str(path), exp)
    except Exception as err:  # pyOpenMS raises RuntimeError with the parser's text
        log.warning("cannot read the instrument of %s (%s): stated as unknown", path, str(err).splitlines()[:1])
        return NOT_STATED
    instrument = exp.getInstrument()
    model = (instrument.getName() or instrument.getModel() or "").strip() or None
    analyzers = []
    for analyzer in sorted(instrument.getMassAnalyzers(), key=lambda a: a.getOrder()):
        kind = analyzer.getType()
        if kind == _TYPE.ANALYZERNULL:
            continue
        analyzers.append(ANALYZER_NAMES.get(kind, getattr(kind, "name", str(kind)).lower()))
    return RunInstrument(model, tuple(analyzers))
