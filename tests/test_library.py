"""Library ingestion: formats, cleaning, ordering, malformed entries, caching and the index-library CLI."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study import cli
from ms2study.core.errors import InputError
from ms2study.library import build
from ms2study.library import index as library

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = SHARED / "fixtures"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"shared fixtures not found at {FIXTURES}")

SIM_ENTRY = """BEGIN IONS
TITLE={title}
PEPMASS={pepmass}
CHARGE={charge}
IONMODE={mode}
ADDUCT={adduct}
NAME={name}
FORMULA=C6H12O6
SMILES=OCC1OC(O)C(O)C(O)C1O
INCHIKEY=WQZGKKKJIJFFOK-GASJEMHNSA-N
COMPOUND_CLASS=Organic compounds; Carbohydrates
SPECTRUM_ID={sid}
{peaks}
END IONS
"""


def sim_entry(sid: str, pepmass: float, peaks: list[tuple[float, float]], mode: str = "positive", **kw) -> str:
    adduct = kw.get("adduct", "[M+H]+" if mode == "positive" else "[M-H]-")
    charge = kw.get("charge", "1+" if mode == "positive" else "1-")
    text = "\n".join(f"{m} {i}" for m, i in peaks)
    return SIM_ENTRY.format(title=sid, pepmass=pepmass, charge=charge, mode=mode, adduct=adduct,
                            name=kw.get("name", f"compound {sid}"), sid=sid, peaks=text)


@pytest.fixture
def sim_library(tmp_path: Path) -> Path:
    path = tmp_path / "library.mgf"
    path.write_text(
        sim_entry("SIM3", 300.0, [(100.0, 10), (150.0, 50), (299.0, 99), (301.0, 5)])
        + sim_entry("SIM1", 200.0, [(50.0, 1), (80.0, 5), (80.0, 5), (120.0, 9)])
        + sim_entry("SIM2", 250.0, [(60.0, 3), (90.0, 7)], mode="negative")
        + "BEGIN IONS\nTITLE=broken\nPEPMASS=180.0\n100.0 abc\nEND IONS\n"      # unreadable peak
        + "BEGIN IONS\nTITLE=noprec\n100.0 5\nEND IONS\n"                       # no precursor
        + sim_entry("SIM4", 210.0, [(70.0, 4), (95.5, 8)])
    )
    return path


def test_simulator_mgf_is_indexed_sorted_and_cleaned(sim_library: Path, tmp_path: Path) -> None:
    index = library.index_library(sim_library, tmp_path / "idx")
    meta = index.metadata
    # Negative mode block first (code -1), then positive sorted by precursor m/z.
    assert meta["library_id"].to_list() == ["SIM2", "SIM1", "SIM4", "SIM3"]
    assert meta["ion_mode"].to_list() == ["negative", "positive", "positive", "positive"]
    assert list(index.ion_mode) == [-1, 1, 1, 1]
    assert list(index.precursor_mz) == [250.0, 200.0, 210.0, 300.0]
    assert meta["inchikey"][0] == "WQZGKKKJIJFFOK-GASJEMHNSA-N"
    assert meta["adduct"].to_list()[1] == "[M+H]+"
    assert meta["compound_class"][0].startswith("Organic compounds")
    # SIM1: duplicate m/z 80 merged (5+5), nothing removed below 200-1.6.
    mz, inten = index.peaks(1)
    np.testing.assert_allclose(mz, [50.0, 80.0, 120.0])
    np.testing.assert_allclose(inten, [1.0, 10.0, 9.0])
    # SIM3: peaks at/above precursor - 1.6 (299, 301) removed.
    np.testing.assert_allclose(index.peaks(3)[0], [100.0, 150.0])
    assert index.mz.dtype == np.float64 and index.intensity.dtype == np.float32
    assert int(index.offsets[-1]) == index.mz.size
    m = index.manifest
    assert m["n_skipped"] == 2
    assert m["skipped_by_reason"] == {"unreadable peak values": 1, "no valid precursor m/z": 1}
    # Positions are reported: entry numbers 4 and 5 of the file.
    assert sorted(s["entry"] for s in m["skipped_first"]) == [4, 5]


def test_truncated_and_gz_files(tmp_path: Path) -> None:
    text = sim_entry("A", 200.0, [(50.0, 1), (60.0, 2)]) + "BEGIN IONS\nTITLE=cut\nPEPMASS=300\n100 1\n"
    gz = tmp_path / "lib.mgf.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(text)
    index = library.index_library(gz, tmp_path / "idx")
    assert len(index) == 1
    assert index.manifest["skipped_by_reason"] == {"file ends inside an entry (no END IONS)": 1}


def test_cache_reused_and_rebuilt_on_change(sim_library: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    first = library.ensure_library_index(sim_library, out)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert library.index_is_current([sim_library], out)
    again = library.ensure_library_index(sim_library, out)
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    assert len(again) == len(first) == 4
    # Different cleaning parameters or changed content -> rebuilt.
    assert not library.index_is_current([sim_library], out, {"cleaning": {"max_peaks": 1}})
    sim_library.write_text(sim_library.read_text() + sim_entry("SIM5", 400.0, [(100.0, 1)]))
    assert not library.index_is_current([sim_library], out)
    assert len(library.ensure_library_index(sim_library, out)) == 5


def test_unknown_parameter_is_rejected(sim_library: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="max_peak"):
        library.index_library(sim_library, tmp_path / "x", {"cleaning": {"max_peak": 3}})
    with pytest.raises(InputError, match="ppm"):
        library.index_library(sim_library, tmp_path / "x", {"ppm": 3})
    (tmp_path / "nothing.txt").write_text("x")
    with pytest.raises(InputError, match="format"):
        library.index_library(tmp_path / "nothing.txt", tmp_path / "x")


def test_embeddings_are_stored_normalised(sim_library: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    index = library.index_library(sim_library, out)
    assert index.embeddings("m") is None
    library.save_library_embeddings(out, "m", np.arange(12, dtype=np.float32).reshape(4, 3) + 1)
    emb = library.load_library_index(out).embeddings("m")
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)


def test_index_library_cli(sim_library: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli_idx"
    assert cli.main(["index-library", "--library", str(sim_library), "--out", str(out)]) == 0
    assert "4 spectra indexed, 2 malformed" in capsys.readouterr().out
    meta = pl.read_parquet(out / "metadata.parquet")
    assert meta.columns[: len(build.METADATA)] == list(build.METADATA)
    assert json.loads((out / "manifest.json").read_text())["n_spectra"] == 4


@needs_fixtures
@pytest.mark.parametrize(
    ("name", "n_spectra", "n_skipped"),
    [
        ("gnps_cleaned.mgf", 3, 2),            # two entries with broken peak lines on purpose
        ("pesticides.mgf", 76, 0),
        ("mzmine.mgf", 3, 0),
        ("massbank_five_spectra.msp", 4, 0),     # Kojic acid keeps no fragment below its precursor
        ("massbank_nist_for_tests.msp", 2, 0),
        ("riken_style_five_spectra.msp", 4, 0),
        ("riken.msp", 1, 2),                      # two EI spectra without precursor m/z
        ("gnps_spectra.json", 5, 0),
    ],
)
def test_fixture_formats(name: str, n_spectra: int, n_skipped: int, tmp_path: Path) -> None:
    index = library.index_library(FIXTURES / name, tmp_path / "idx")
    assert len(index) == n_spectra
    assert index.manifest["n_skipped"] == n_skipped
    meta = index.metadata
    assert meta["precursor_mz"].null_count() == 0
    assert meta["ion_mode"].null_count() == 0
    assert (meta["n_peaks"] > 0).all()
    # Every spectrum's peaks are below its precursor (cleaning applied) and in ascending m/z.
    for i in range(len(index)):
        mz, _ = index.peaks(i)
        assert np.all(np.diff(mz) > 0)
        assert mz.max() < index.precursor_mz[i] - 1.6 + 1e-9


@needs_fixtures
def test_gnps_json_and_msp_metadata(tmp_path: Path) -> None:
    js = library.index_library(FIXTURES / "gnps_spectra.json", tmp_path / "js").metadata
    assert js["library_id"].str.starts_with("CCMSLIB").all()
    assert set(js["ion_mode"]) == {"positive"}
    msp = library.index_library(FIXTURES / "massbank_five_spectra.msp", tmp_path / "msp").metadata
    row = msp.filter(pl.col("name") == "Cyclizine").row(0, named=True)
    assert row["inchikey"] == "UVKZSORBKUEBAZ-UHFFFAOYSA-N"
    assert row["adduct"] == "[M+H]+" and row["ion_mode"] == "positive"
    assert row["library_id"] == "HB000434"


def test_a_record_without_inchikey_takes_the_one_of_its_smiles(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                                ) -> None:
    """A fresh user's library without InChIKeys lost 2 of 6 right names: the structure identity fell back to the
    name, so synonyms ("Azinphos methyl", "Azinphos-methyl") counted as two structures and doubled the p-values.
    A record with a SMILES and no InChIKey gets the SMILES's (RDKit); one with neither keeps its name, and both
    are recorded in the index manifest as read with changes."""
    from ms2study.identification.confidence import library_codes

    smiles = "COP(=S)(OC)SCN1N=NC2=CC=CC=C2C1=O"  # azinphos-methyl
    path = tmp_path / "lab.msp"
    path.write_text(
        f"Name: Azinphos methyl\nPrecursorMZ: 318.0130\nPrecursor_type: [M+H]+\nIon_mode: P\nSMILES: {smiles}\n"
        "Num Peaks: 2\n132.0444 100\n160.0505 50\n\n"
        f"Name: Azinphos-methyl\nPrecursorMZ: 318.0130\nPrecursor_type: [M+H]+\nIon_mode: P\nSMILES: {smiles}\n"
        "Num Peaks: 2\n132.0444 90\n77.0386 30\n\n"
        "Name: Unknown thing\nPrecursorMZ: 250.1000\nPrecursor_type: [M+H]+\nIon_mode: P\n"
        "Num Peaks: 2\n100.0 100\n120.0 50\n\n")
    out = tmp_path / "idx"
    with caplog.at_level(logging.WARNING, logger="ms2study.library.build"):
        library.index_library([path], out)
    # the log names the record whose name stands for its structure (trial L: a warning with a count only)
    assert "1 library spectra have no InChIKey and no parsable SMILES" in caplog.text
    assert "(add InChIKeys or SMILES to the library): Unknown thing (lab.msp:3)" in caplog.text
    index = library.load_library_index(out)
    meta = index.metadata.sort("name")
    keys = dict(zip(meta["name"], meta["inchikey"]))
    assert keys["Azinphos methyl"] == keys["Azinphos-methyl"] == "CJJOSEISRRTUQB-UHFFFAOYSA-N"
    assert keys["Unknown thing"] is None
    structure, _ = library_codes(index.metadata)
    assert len(set(structure.tolist())) == 2  # the two synonyms are one structure
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["altered_by_reason"] == {"InChIKey derived from the SMILES": 2}
    assert manifest["n_name_as_structure"] == 1
    # the report says so as a quality warning on the identifications
    from ms2study.reporting.collect import library_summary
    from ms2study.reporting.html import QUALITY, kind_of

    warned: list[str] = []
    assert "1 spectra have no InChIKey and no parsable SMILES" in library_summary([out], warned)
    assert [kind_of(w) for w in warned] == [QUALITY] and "synonyms count as different compounds" in warned[0]


def test_whole_number_precursors_are_counted_and_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Trial finding: MassBank records of a unit-resolution lab give the precursor as "146.0"; an accurate query
    never falls within a ppm window of it, silently. The index counts them, the log and the report say so."""
    text = "".join(
        f"BEGIN IONS\nTITLE={name}\nPEPMASS={mz}\nCHARGE=1+\nIONMODE=positive\n"
        "50.0 10\n60.0 20\n70.0 100\nEND IONS\n"
        for name, mz in (("keio1", "146.0"), ("keio2", "180"), ("accurate", "146.0924")))
    (tmp_path / "lib.mgf").write_text(text)
    with caplog.at_level("WARNING"):
        library.index_library(tmp_path / "lib.mgf", tmp_path / "index")
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["n_whole_number_precursor"] == 2 and len(manifest["whole_number_precursor_first"]) == 2
    assert "2 of 3 spectra have a whole-number precursor m/z" in caplog.text
    from ms2study.reporting.collect import library_summary

    assert "2 spectra have a whole-number precursor m/z (unit resolution" in library_summary([tmp_path / "index"], [])


def test_a_record_without_an_adduct_field_gets_the_one_its_precursor_and_formula_give(tmp_path) -> None:
    """Trial (negative mode): a RIKEN record with PEPMASS = M - H and no ADDUCT line gave its identification an
    empty adduct, so nothing compared it with the feature's grouped ion."""
    from ms2study.library.adducts import infer_adduct

    glucose = 180.063388  # C6H12O6
    assert infer_adduct("C6H12O6", glucose - 1.007276, "negative") == "[M-H]-"
    assert infer_adduct("C6H12O6", glucose + 44.998201 + 0.001, "negative") == "[M+FA-H]-"
    assert infer_adduct("C6H12O6", glucose + 22.989218, None) == "[M+Na]+"
    assert infer_adduct("C6H12O6", glucose + 1.007276 + 0.01, "positive") is None  # 10 mDa off: no ion
    assert infer_adduct("C6H12O6", glucose + 1.007276, "negative") is None  # not an ion of that polarity
    assert infer_adduct(None, 181.07, "positive") is None and infer_adduct("C6H12O6+", 181.07, "positive") is None
    assert infer_adduct("not a formula", 181.07, "positive") is None
    mgf = tmp_path / "lib.mgf"
    mgf.write_text("BEGIN IONS\nTITLE=glucose\nPEPMASS=179.056112\nIONMODE=negative\nFORMULA=C6H12O6\n"
                   "INCHIKEY=WQZGKKKJIJFFOK-GASJEMHNSA-N\n59.0133 100\n89.0239 40\n119.0344 20\nEND IONS\n"
                   "BEGIN IONS\nTITLE=stated\nPEPMASS=179.056112\nIONMODE=negative\nFORMULA=C6H12O6\n"
                   "ADDUCT=[M-H]1-\n59.0133 100\n89.0239 40\nEND IONS\n")
    from ms2study.io.entries import ReadReport
    from ms2study.io.formats import read_library_file
    from ms2study.library.build import build_library

    report = ReadReport()
    built = build_library(list(read_library_file(mgf, report)), report=report)
    assert built.metadata["adduct"].to_list() == ["[M-H]-", "[M-H]1-"]
    altered = [i for i in built.report.altered if i.reason == "adduct read from the precursor m/z and the formula"]
    assert [(i.identifier, i.detail) for i in altered] == [("glucose", "[M-H]-")]


def test_a_library_that_cannot_calibrate_confidence_is_refused_before_any_job(tmp_path, caplog) -> None:
    """A trial: a two-record lab library ran detection to correction, then the calibrate job stopped ("no
    leave-structure-out search found a wrong candidate"). The study check now reads a small library as the index
    job will and refuses it first, naming both ways out."""
    from ms2study.core.errors import InputError
    from ms2study.identification.calibratable import calibration_problem, refuse_uncalibratable

    def record(name: str, key: str, mz: float) -> str:
        return (f"BEGIN IONS\nNAME={name}\nPEPMASS={mz}\nCHARGE=1+\nIONMODE=positive\nINCHIKEY={key}-UHFFFAOYSA-N\n"
                f"{mz * 0.4:.4f} 100\n{mz * 0.6:.4f} 40\n{mz * 0.7:.4f} 20\nEND IONS\n")
    lab = tmp_path / "lab.mgf"
    lab.write_text(record("a", "AAAAAAAAAAAAAA", 195.0877) + record("b", "BBBBBBBBBBBBBB", 281.1))
    assert "no record of another structure within 5 Da in the same ion mode" in calibration_problem([lab])
    with pytest.raises(InputError, match=r"the library \(lab.mgf\) cannot calibrate identification confidence") as err:
        refuse_uncalibratable([lab], {"annotate": {"confidence": "null_model"}})
    assert "annotate: confidence: none" in str(err.value) and "MassBank" in str(err.value)
    refuse_uncalibratable([lab], {"annotate": {"confidence": "none"}})  # names without q-values: allowed
    more = tmp_path / "more.mgf"
    more.write_text(record("c", "CCCCCCCCCCCCCC", 193.0))  # another structure 2.1 Da from a
    assert calibration_problem([lab, more]) is None
    # trial AF: this check before any job logged its own partial count ("library : 0 entries, 325 used") and the
    # skipped records again; the index job says all of it, here nothing is logged
    broken = tmp_path / "broken.mgf"
    broken.write_text(record("c", "CCCCCCCCCCCCCC", 193.0) + "BEGIN IONS\nNAME=no precursor\n100.0 5\nEND IONS\n")
    with caplog.at_level(logging.INFO, logger="ms2study"):
        assert calibration_problem([lab, broken]) is None
    assert not [r for r in caplog.records if r.name.startswith("ms2study")], caplog.text
    bare = tmp_path / "bare.mgf"
    bare.write_text(record("a", "AAAAAAAAAAAAAA", 195.0877).replace("INCHIKEY=AAAAAAAAAAAAAA-UHFFFAOYSA-N\n", ""))
    assert "has both a structure (InChIKey or SMILES) and an ion mode" in calibration_problem([bare])


def test_a_rounded_library_precursor_takes_its_ions_exact_mz_or_is_said(tmp_path, caplog) -> None:
    """Trial L: library records with the precursor m/z written to 1-2 decimals (181.07, 181.1) are up to 0.05 Da off,
    so an accurate query never falls within a 10-ppm window of them, and nothing said so. With a formula and an ion
    (stated, or the one its polarity allows) the exact m/z replaces the rounded one; the others are counted and
    said; accurate and whole-number precursors are left as they are."""
    glucose_mh = 180.063388 + 1.007276  # C6H12O6 [M+H]+ 181.070664
    peaks = "59.0133 100\n89.0239 40\n119.0344 20\n"
    records = (("stated_ion", "181.07", "FORMULA=C6H12O6\nADDUCT=[M+H]+\n"),
               ("formula_only", "181.07", "FORMULA=C6H12O6\n"),
               ("one_decimal_no_ion", "181.1", "FORMULA=C6H12O6\n"),  # 0.05 Da: an ion read from it is a guess
               ("one_decimal_stated", "181.1", "FORMULA=C6H12O6\nADDUCT=[M+H]+\n"),
               ("no_formula", "181.07", ""),
               ("wrong_formula", "181.07", "FORMULA=C7H14O6\nADDUCT=[M+H]+\n"),
               ("accurate", "181.0707", "FORMULA=C6H12O6\nADDUCT=[M+H]+\n"),
               ("exponent", "1.8107e2", "FORMULA=C6H12O6\nADDUCT=[M+H]+\n"),
               # trial R: a rounding that lands on a whole number is one too (C7H5NOS [M-H]- 150.0019)
               ("whole_rounded", "150.00", "FORMULA=C7H5NOS\nADDUCT=[M-H]-\nIONMODE=negative\n"),
               # a unit-resolution record (its ion at 181.07, written 181.0) fits no rounding: left as it is
               ("unit_resolution", "181.0", "FORMULA=C6H12O6\nADDUCT=[M+H]+\n"),
               # trial R: the spellings libraries use for an ion ("M+H", "[M-H]") were not read, the records kept
               # their rounded m/z
               ("plain_spelling", "181.07", "FORMULA=C6H12O6\nADDUCT=M+H\n"),
               ("bracket_no_charge", "179.06", "FORMULA=C6H12O6\nADDUCT=[M-H]\nIONMODE=negative\n"))
    (tmp_path / "lib.mgf").write_text("".join(
        f"BEGIN IONS\nTITLE={name}\nPEPMASS={mz}\n{extra}"
        + ("" if "IONMODE" in extra else "IONMODE=positive\n") + f"{peaks}END IONS\n"
        for name, mz, extra in records))
    with caplog.at_level("WARNING"):
        index = library.index_library(tmp_path / "lib.mgf", tmp_path / "index")
    got = dict(zip(index.metadata["library_id"].to_list(), index.metadata["precursor_mz"].to_list()))
    assert got["stated_ion"] == pytest.approx(glucose_mh, abs=1e-5)
    assert got["formula_only"] == pytest.approx(glucose_mh, abs=1e-5)
    assert got["no_formula"] == 181.07 and got["wrong_formula"] == 181.07 and got["one_decimal_no_ion"] == 181.1
    assert got["one_decimal_stated"] == pytest.approx(glucose_mh, abs=1e-5)
    assert got["whole_rounded"] == pytest.approx(150.0019, abs=1e-4) and got["unit_resolution"] == 181.0
    assert got["accurate"] == 181.0707 and got["exponent"] == pytest.approx(181.07)
    assert got["plain_spelling"] == pytest.approx(glucose_mh, abs=1e-5)
    assert got["bracket_no_charge"] == pytest.approx(180.063388 - 1.007276, abs=1e-5)
    adducts = dict(zip(index.metadata["library_id"].to_list(), index.metadata["adduct"].to_list()))
    assert adducts["formula_only"] == "[M+H]+"
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["n_rounded_precursor"] == 4
    assert sorted(manifest["rounded_precursor_first"]) == ["no_formula", "one_decimal_no_ion", "unit_resolution",
                                                           "wrong_formula"]
    assert manifest["altered_by_reason"]["rounded precursor m/z replaced by the ion's exact m/z"] == 6
    assert manifest["n_whole_number_precursor"] == 1  # the unit-resolution record only
    assert "4 spectra have a precursor m/z rounded to 1-2 decimals" in caplog.text
    from ms2study.reporting.collect import library_summary

    assert "4 spectra have a precursor m/z rounded to 1-2 decimals" in library_summary([tmp_path / "index"], [])
    from ms2study.io.fields import stated_decimals

    assert [stated_decimals({"PEPMASS": t}) for t in ("181.07 1000", "181", "281,20", "1e2")] == [2, 0, 2, None]
    from ms2study.core.ions import ion_label

    assert [ion_label(t) for t in ("M+Na", "[M+H]1+", "M-H-", "M+H-", "[M+2H]2+", "2M+H", "M")] == [
        "[M+Na]+", "[M+H]+", "[M-H]-", None, None, None, None]


def test_a_record_without_a_precursor_takes_its_formulas_ion_when_both_are_given(tmp_path) -> None:
    """Trial AF: an MSP record with Formula and Precursor_type: [M+H]+ but no precursor m/z was skipped; its ion's
    m/z is computed and recorded as altered. Without the adduct it is skipped as before, and a record whose
    precursor field is there but unreadable is refused, not overridden."""
    from ms2study.io import entries
    from ms2study.io.formats import read_library_file

    peaks = "Num Peaks: 2\n59.0133 100\n89.0239 40\n\n"
    text = ("Name: computed\nDB#: A\nFormula: C6H12O6\nPrecursor_type: [M+H]+\nIon_mode: P\n" + peaks
            + "Name: no_adduct\nDB#: B\nFormula: C6H12O6\nIon_mode: P\n" + peaks
            + "Name: unreadable\nDB#: C\nPrecursorMZ: n/a181\nFormula: C6H12O6\nPrecursor_type: [M+H]+\n" + peaks)
    (tmp_path / "lib.msp").write_text(text)
    report = entries.ReadReport()
    built = build.build_library(read_library_file(tmp_path / "lib.msp", report), None, report)
    assert built.metadata["library_id"].to_list() == ["A"]
    assert abs(float(built.precursor_mz[0]) - (180.063388 + 1.007276)) < 1e-5
    assert report.by_reason(entries.ALTERED)[entries.PRECURSOR_FROM_FORMULA] == 1
    assert [i.identifier for i in report.skipped] == ["B", "C"]
