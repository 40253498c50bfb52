"""Spectrum readers (library and query): polarity, unique ids, named skips and alterations, MSP dialects.

Every input is a small text written by the test; every test asserts concrete values.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.core.errors import InputError
from ms2study.io import entries, fields, formats
from ms2study.io.queries import QUERY_SCHEMA, read_query_spectra
from ms2study.library import build
from ms2study.library import index as library


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def mgf(title: str | None, pepmass: str | None, peaks: str = "50 10\n60 20\n", **keys: str) -> str:
    lines = ["BEGIN IONS"]
    if title is not None:
        lines.append(f"TITLE={title}")
    if pepmass is not None:
        lines.append(f"PEPMASS={pepmass}")
    lines += [f"{k}={v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n" + peaks + "END IONS\n"


def library_of(path: Path, tmp_path: Path) -> pl.DataFrame:
    return library.index_library(path, tmp_path / f"idx_{path.name}").metadata


# ------------------------------------------------------------------------------------------ polarity

POLARITY_CASES = [
    # (file name, entry text, expected ion mode)
    ("ionmode.mgf", mgf("q", "200", IONMODE="Negative"), "negative"),
    ("ionmode_pos.mgf", mgf("q", "200", IONMODE="positive", CHARGE="1-"), "positive"),   # IONMODE wins
    ("charge_only.mgf", mgf("q", "200", CHARGE="1-"), "negative"),
    ("charge_minus_first.mgf", mgf("q", "200", CHARGE="-2"), "negative"),
    ("charge_plus.mgf", mgf("q", "200", CHARGE="2+"), "positive"),
    ("charge_unsigned.mgf", mgf("q", "200", CHARGE="1"), "positive"),
    ("charge_unsigned_adduct.mgf", mgf("q", "200", CHARGE="1", ADDUCT="[M-H]-"), "negative"),  # adduct > unsigned
    ("adduct.mgf", mgf("q", "200", ADDUCT="[M+Na]+"), "positive"),
    ("charge_zero.mgf", mgf("q", "200", CHARGE="0"), None),
    ("none.mgf", mgf("q", "200"), None),
    ("ionization.mgf", mgf("q", "200", IONIZATION="ESI-"), "negative"),
    ("msp_n.msp", "Name: q\nPrecursorMZ: 200\nIon_mode: N\nNum Peaks: 2\n50 10\n60 20\n", "negative"),
    ("msp_p.msp", "Name: q\nPrecursorMZ: 200\nIon_mode: P\nNum Peaks: 2\n50 10\n60 20\n", "positive"),
    ("msp_ionization.msp", "Name: q\nPrecursorMZ: 200\nIonization: ESI+\nNum Peaks: 2\n50 10\n60 20\n", "positive"),
    ("msp_type.msp", "Name: q\nPrecursorMZ: 200\nPrecursor_type: [M-H]-\nNum Peaks: 2\n50 10\n60 20\n", "negative"),
    ("json.json", json.dumps([{"spectrum_id": "q", "Precursor_MZ": "200", "Ion_Mode": "Negative",
                               "peaks_json": "[[50, 10], [60, 20]]"}]), "negative"),
]


@pytest.mark.parametrize(("name", "text", "expected"), POLARITY_CASES, ids=[c[0] for c in POLARITY_CASES])
def test_query_polarity_is_read_as_for_the_library(name: str, text: str, expected: str | None, tmp_path: Path) -> None:
    path = write(tmp_path, name, text)
    queries, report = read_query_spectra(path)
    assert queries["ion_mode"].to_list() == [expected]
    assert queries["precursor_mz"].to_list() == [200.0]
    # The same text read as a library gives the same ion mode (one reader for both).
    assert library_of(path, tmp_path)["ion_mode"].to_list() == [expected]
    conflicting = name == "ionmode_pos.mgf"  # IONMODE=positive beside CHARGE=1-: read, and named
    assert report.n_used == 1 and [i.reason for i in report.issues] == (["ion mode fields disagree"] if conflicting
                                                                        else [])


def test_contradicting_ion_mode_fields_are_named_with_the_mode_taken(tmp_path: Path) -> None:
    """Trial finding (session 21): a positive record written with CHARGE=1- and ADDUCT=[M+H]+ was searched as
    negative without a word, found no candidate and vanished from the output."""
    path = write(tmp_path, "q.mgf", mgf("q8", "200", CHARGE="1-", ADDUCT="[M+H]+") + mgf("ok", "200", CHARGE="1+",
                                                                                          ADDUCT="[M+H]+"))
    queries, report = read_query_spectra(path)
    assert queries["ion_mode"].to_list() == ["negative", "positive"]
    (issue,) = report.issues
    assert issue.identifier == "q8" and issue.action == "altered" and issue.reason == "ion mode fields disagree"
    assert "CHARGE=1- (negative)" in issue.detail and "ADDUCT=[M+H]+ (positive)" in issue.detail
    assert "searched as negative (from CHARGE=1-)" in issue.detail
    assert fields.ion_mode_conflict({"IONMODE": "Positive", "ADDUCT": "[M+H]+"}) is None


def test_ion_mode_of_precedence() -> None:
    assert fields.ion_mode_of({"IONMODE": "N", "CHARGE": "1+"}) == "negative"
    assert fields.ion_mode_of({"IONIZATION": "APCI+", "CHARGE": "1-"}) == "positive"
    assert fields.ion_mode_of({"IONIZATION": "ESI", "CHARGE": "1-"}) == "negative"   # ESI alone says nothing
    assert fields.ion_mode_of({"CHARGE": "1+", "ADDUCT": "[M-H]-"}) == "positive"     # signed charge > adduct
    assert fields.ion_mode_of({"POLARITY": "+"}) == "positive"
    assert fields.ion_mode_of({"POLARITY": "NEG"}) == "negative"
    assert fields.ion_mode_of({"IONMODE": "-"}) is None          # a lone "-" is a missing value, as elsewhere
    assert fields.ion_mode_of({"IONMODE": "unknown", "ADDUCT": "[M+H]+*"}) == "positive"
    assert fields.ion_mode_of({}) is None


# ------------------------------------------------------------------------------------------ query table


def test_query_table_schema_order_and_raw_peaks(tmp_path: Path) -> None:
    path = write(tmp_path, "q.mgf", mgf("b", "300.5", "120 7\n80 3\n120 1\n")
                 + mgf("a", "150", "70\t2\t1+\n"))
    queries, report = read_query_spectra(path)
    assert queries.schema == pl.Schema(QUERY_SCHEMA)
    assert queries["spectrum_id"].to_list() == ["b", "a"]                 # file order, not sorted
    assert queries["sample_id"].null_count() == 2 and queries["feature_id"].null_count() == 2
    assert queries["mz"].to_list() == [[120.0, 80.0, 120.0], [70.0]]     # as read: not sorted, not merged
    assert queries["intensity"].to_list() == [[7.0, 3.0, 1.0], [2.0]]
    assert report.what == "queries" and report.n_entries == 2 and report.n_used == 2


def test_repeated_titles_get_suffixes_and_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = mgf("X", "200") + mgf("X", "210") + mgf("X#2", "220") + mgf("X", "230") + mgf(None, "240")
    path = write(tmp_path, "dup.mgf", text)
    with caplog.at_level(logging.WARNING, logger="ms2study.io.entries"):
        queries, report = read_query_spectra(path)
    # The literal "X#2" keeps its id, so the second X skips to #3; an entry without id gets file:entry.
    assert queries["spectrum_id"].to_list() == ["X", "X#3", "X#2", "X#4", "dup.mgf:5"]
    assert queries["spectrum_id"].n_unique() == 5
    renames = [(i.entry, i.identifier, i.detail) for i in report.altered]
    assert renames == [
        (2, "X", "'X' -> 'X#3' (already used by entry 1 of dup.mgf)"),
        (4, "X", "'X' -> 'X#4' (already used by entry 1 of dup.mgf)"),
    ]
    assert report.by_reason(entries.ALTERED) == {entries.DUPLICATE_ID: 2}
    assert "altered entry 2 (line 7, id 'X'): duplicate identifier renamed: 'X' -> 'X#3'" in caplog.text


def test_unsearchable_queries_are_named_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = (
        mgf("ok", "200")                                   # 1
        + mgf("noprec", None)                              # 2 no precursor
        + mgf("zero", "0")                                 # 3 precursor 0
        + mgf("neg", "-5")                                 # 4 negative precursor
        + mgf("text", "abc")                               # 5 not a number
        + mgf("badpeaks", "200", "50 10\n60 x\n")          # 6 unreadable peaks
        + mgf("nopeaks", "200", "")                        # 7 no peaks
        + mgf("allbad", "200", "50 -1\n60 nan\n")          # 8 no valid peaks
        + "BEGIN IONS\nTITLE=cut\nPEPMASS=200\n50 1\n"     # 9 truncated
    )
    path = write(tmp_path, "q.mgf", text)
    with caplog.at_level(logging.WARNING, logger="ms2study.io.entries"):
        queries, report = read_query_spectra(path)
    assert queries["spectrum_id"].to_list() == ["ok"]
    skipped = [(i.entry, i.identifier, i.reason) for i in report.skipped]
    assert skipped == [
        (2, "noprec", entries.NO_PRECURSOR),
        (3, "zero", entries.NO_PRECURSOR),
        (4, "neg", entries.NO_PRECURSOR),
        (5, "text", entries.NO_PRECURSOR),
        (6, "badpeaks", entries.UNREADABLE_PEAKS),
        (7, "nopeaks", entries.NO_PEAKS),
        (8, "allbad", entries.NO_VALID_PEAKS),
        (9, "cut", entries.TRUNCATED),
    ]
    details = {i.identifier: i.detail for i in report.skipped}
    assert details["zero"] == "PEPMASS is 0"
    assert details["neg"] == "PEPMASS '-5' is negative"
    assert details["text"] == "PEPMASS 'abc' is not a number"
    assert details["badpeaks"] == "line 34: 'x' is not a number"
    assert details["allbad"] == "2 of 2 peaks dropped (1 negative intensity, 1 NaN intensity)"
    assert report.n_entries == 9 and report.n_used == 1 and report.n_skipped == 8
    assert report.by_reason(entries.SKIPPED)[entries.NO_PRECURSOR] == 4
    assert "skipped entry 3 (line 12, id 'zero'): no valid precursor m/z: PEPMASS is 0" in caplog.text
    assert "skipped entry 7 (line 36, id 'nopeaks'): no peaks" in caplog.text
    assert "queries q.mgf: 9 entries, 1 used; 8 skipped (4 no valid precursor m/z, 1 unreadable" in report.summary()
    frame = report.to_frame()
    assert frame.columns == ["file", "entry", "line", "identifier", "action", "reason", "detail"]
    assert frame.height == 8 and frame["action"].unique().to_list() == ["skipped"]


def test_no_searchable_query_is_an_error_unless_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "none.mgf", mgf("a", None) + mgf("b", "0"))
    with pytest.raises(InputError, match=r"none\.mgf.*no usable query spectrum \(2 entries; 2 no valid precursor"
                                         r".*PEPMASS="):
        read_query_spectra(path)
    queries, report = read_query_spectra(path, require_any=False)
    assert queries.height == 0 and queries.schema == pl.Schema(QUERY_SCHEMA)
    assert report.n_skipped == 2
    with pytest.raises(InputError, match="query file not found"):
        read_query_spectra(tmp_path / "missing.mgf")


def test_query_cleaning_option_names_emptied_queries(tmp_path: Path) -> None:
    # All peaks of "high" lie above its precursor minus 1.6 Da: nothing is left to search.
    path = write(tmp_path, "q.mgf", mgf("low", "200", "50 1\n") + mgf("high", "100", "99 1\n150 2\n"))
    queries, report = read_query_spectra(path, cleaning=build.DEFAULT_PARAMS["cleaning"])
    assert queries["spectrum_id"].to_list() == ["low"]
    assert [(i.entry, i.identifier, i.reason, i.action) for i in report.issues] == [
        (2, "high", entries.EMPTY_AFTER_CLEANING, "emptied")]
    assert report.emptied[0].detail.startswith("2 peaks read, none left by cleaning")
    # Without the option the query is returned with its raw peaks.
    assert read_query_spectra(path)[0]["spectrum_id"].to_list() == ["low", "high"]


# ------------------------------------------------------------------------------------------ decimal comma


@pytest.mark.parametrize(
    ("pepmass", "expected"),
    [
        ("281,2013306", 281.2013306),
        ("281,2013306 1000", 281.2013306),
        ("281,2013306\t1,5e3", 281.2013306),
        ("281.2013306 1000", 281.2013306),
    ],
)
def test_decimal_comma_is_read_when_unambiguous(pepmass: str, expected: float, tmp_path: Path) -> None:
    path = write(tmp_path, "q.mgf", mgf("dc", pepmass))
    queries, report = read_query_spectra(path)
    assert queries["precursor_mz"].to_list() == [expected]
    notes = [(i.identifier, i.reason, i.detail) for i in report.altered]
    if "," in pepmass.split()[0]:
        note = f"PEPMASS '{pepmass}' has a decimal comma: read as {expected!r}"
        assert notes == [("dc", entries.DECIMAL_COMMA, note)]
    else:
        assert notes == []
    assert library_of(path, tmp_path)["precursor_mz"].to_list() == [expected]


@pytest.mark.parametrize("pepmass", ["281,20,13", "1,281.5", "281,", ",5", "281.2,1000"])
def test_ambiguous_comma_is_refused_naming_the_entry(pepmass: str, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "q.mgf", mgf("good", "200") + mgf("amb", pepmass))
    with caplog.at_level(logging.WARNING, logger="ms2study.io.entries"):
        queries, report = read_query_spectra(path)
    assert queries["spectrum_id"].to_list() == ["good"]
    (issue,) = report.skipped
    assert (issue.entry, issue.identifier, issue.reason) == (2, "amb", entries.NO_PRECURSOR)
    assert issue.detail.startswith(f"PEPMASS '{pepmass}' is ambiguous")
    assert "write the m/z with a decimal point" in issue.detail
    assert "skipped entry 2 (line 7, id 'amb')" in caplog.text


def test_precursor_of_msp_decimal_comma() -> None:
    assert fields.precursor_of({"PRECURSORMZ": "399,2512"}) == (
        399.2512, "", "PRECURSORMZ '399,2512' has a decimal comma: read as 399.2512")
    assert fields.precursor_of({"PRECURSORMZ": "inf"})[1] == "PRECURSORMZ 'inf' is not finite"
    assert fields.precursor_of({"PRECURSORMZ": "N/A"})[0] is None


# ------------------------------------------------------------------------------------------ MSP dialects

NIST = """Name: Glycine, 2TMS
Synon: NIST old style
NIST#: 12345
Formula: C8H21NO2Si2
PrecursorMZ: 220.1
Precursor_type: [M+H]+
Num Peaks: 6
(55 102) (56,3) (57 8)
58 9; 59 10; 60 11;

Name: Alanine
DB#: NIST-2
PrecursorMZ: 90.05
Ion_mode: P
Num Peaks: 3
44.05 999 "C2H6N+ 0.1ppm"
45.03 12 "?"
72.04 5 "p-H2O/1.2ppm"
"""

MASSBANK = """Name: Tris(2-butoxyethyl) phosphate
DB#: MSBNK-TEST-0001
InChIKey: WTLBZVNBAKMVDP-UHFFFAOYSA-N
Precursor_type: [M+H]+
Spectrum_type: MS2
PrecursorMZ: 399.2512
Instrument_type: LC-ESI-QFT
Ion_mode: POSITIVE
Comments: "computed SMILES=CCCCOCCOP(=O)(OCCOCCCC)OCCOCCCC"
Num Peaks: 3
55.05457 96
199.07362 999
299.16226 685
"""

MSDIAL = """NAME: Caffeine
PRECURSORMZ: 195.0877
PRECURSORTYPE: [M+H]+
IONMODE: Positive
RETENTIONTIME: 3.2
Comment: MS-DIAL export
Num Peaks: 3
110.0713\t15
138.0662\t999
163.0\t22
NAME: Theobromine
PRECURSORMZ: 179.0575
PRECURSORTYPE: [M-H]-
IONMODE: Negative
Num Peaks: 2
136.0\t80
164.0\t100
"""

RIKEN = """NAME: Kaempferol
PRECURSORMZ: 285.0405
PRECURSORTYPE: [M-H]-
FORMULA: C15H10O6
ONTOLOGY: Flavonols
INCHIKEY: JPFCOVZKLAXXOE-UHFFFAOYSA-N
IONMODE: Negative
Num Peaks: 2
Comment: metadata between Num Peaks and the peaks
COLLISIONENERGY: 35
93.0345\t120
151.0037\t999
"""

GOLM = """Name: Alanine (2TMS)
Synon: RI: 1100
Formula: C9H23NO2Si2
Num Peaks: 5
 70 93; 71 18; 72 21;
 73 999; 74 85;

Name: Alanine (2TMS) with precursor
PrecursorMZ: 233.0
Num Peaks: 5
 70 93; 71 18; 72 21;
 73 999; 74 85;
"""

COLON = """Name: colon pairs
PrecursorMZ: 300
Num Peaks: 4
100:5 110:6
120:7
130,8
"""


def test_nist_msp_pair_forms(tmp_path: Path) -> None:
    queries, report = read_query_spectra(write(tmp_path, "nist.msp", NIST))
    assert queries["spectrum_id"].to_list() == ["12345", "NIST-2"]
    assert queries["mz"][0].to_list() == [55.0, 56.0, 57.0, 58.0, 59.0, 60.0]
    assert queries["intensity"][0].to_list() == [102.0, 3.0, 8.0, 9.0, 10.0, 11.0]
    assert queries["mz"][1].to_list() == [44.05, 45.03, 72.04]          # quoted annotations ignored
    assert queries["intensity"][1].to_list() == [999.0, 12.0, 5.0]
    assert queries["ion_mode"].to_list() == ["positive", "positive"]
    assert report.issues == []


def test_massbank_msdial_riken_colon_msp(tmp_path: Path) -> None:
    mb, _ = read_query_spectra(write(tmp_path, "mb.msp", MASSBANK))
    assert mb.row(0, named=True) | {"mz": None, "intensity": None} == {
        "spectrum_id": "MSBNK-TEST-0001", "sample_id": None, "feature_id": None, "precursor_mz": 399.2512,
        "ion_mode": "positive", "mz": None, "intensity": None, "name": "Tris(2-butoxyethyl) phosphate"}
    assert mb["mz"][0].to_list() == [55.05457, 199.07362, 299.16226]

    # MS-DIAL: tabs, and the second record begins without a blank line.
    md, report = read_query_spectra(write(tmp_path, "msdial.msp", MSDIAL))
    assert md["precursor_mz"].to_list() == [195.0877, 179.0575]
    assert md["ion_mode"].to_list() == ["positive", "negative"]
    assert md["mz"].to_list() == [[110.0713, 138.0662, 163.0], [136.0, 164.0]]
    assert md["intensity"].to_list() == [[15.0, 999.0, 22.0], [80.0, 100.0]]
    assert report.n_entries == 2 and report.issues == []
    assert md["spectrum_id"].to_list() == ["msdial.msp:1", "msdial.msp:2"]  # no id anywhere: file and entry
    # MS-DIAL's public libraries name the source record inside Comment; MoNA inside quoted Comments
    with_ids = MSDIAL.replace("Comment: MS-DIAL export", "Comment: DB#=MSBNK-RIKEN-PR100001; origin=MassBank")
    with_ids = with_ids.replace("IONMODE: Negative", 'IONMODE: Negative\nComments: "SMILES=C" "accession=CCMSLIB0001"')
    ids, _ = read_query_spectra(write(tmp_path, "msdial_ids.msp", with_ids))
    assert ids["spectrum_id"].to_list() == ["MSBNK-RIKEN-PR100001", "CCMSLIB0001"]

    # RIKEN: metadata lines between 'Num Peaks' and the peaks stay metadata, the peaks are all read.
    path = write(tmp_path, "riken.msp", RIKEN)
    rk, _ = read_query_spectra(path)
    assert rk["mz"].to_list() == [[93.0345, 151.0037]] and rk["ion_mode"].to_list() == ["negative"]
    meta = library_of(path, tmp_path).row(0, named=True)
    assert meta["collision_energy"] == "35" and meta["compound_class"] == "Flavonols"
    assert meta["inchikey"] == "JPFCOVZKLAXXOE-UHFFFAOYSA-N" and meta["adduct"] == "[M-H]-"

    colon, _ = read_query_spectra(write(tmp_path, "colon.msp", COLON))
    assert colon["mz"].to_list() == [[100.0, 110.0, 120.0, 130.0]]
    assert colon["intensity"].to_list() == [[5.0, 6.0, 7.0, 8.0]]


def test_golm_msp_and_gc_entries_without_precursor(tmp_path: Path) -> None:
    path = write(tmp_path, "golm.msp", GOLM)
    queries, report = read_query_spectra(path)
    assert queries["spectrum_id"].to_list() == ["golm.msp:2"]
    assert queries["mz"].to_list() == [[70.0, 71.0, 72.0, 73.0, 74.0]]
    assert queries["intensity"].to_list() == [[93.0, 18.0, 21.0, 999.0, 85.0]]
    assert [(i.entry, i.identifier, i.reason) for i in report.skipped] == [
        (1, "golm.msp:1", entries.NO_PRECURSOR)]
    # As a library, the EI entry without precursor is skipped the same way; the other is indexed.
    index = library.index_library(path, tmp_path / "idx")
    assert index.metadata["name"].to_list() == ["Alanine (2TMS) with precursor"]
    assert index.manifest["skipped_by_reason"] == {entries.NO_PRECURSOR: 1}
    assert index.manifest["skipped_first"][0]["identifier"] == "golm.msp:1"


def test_msp_problems_are_named(tmp_path: Path) -> None:
    text = (
        "Name: count\nDB#: C1\nPrecursorMZ: 200\nNum Peaks: 3\n50 1\n60 2\n\n"          # 2 of 3 peaks
        "Name: unreadable\nDB#: U1\nPrecursorMZ: 200\nNum Peaks: 2\n50 1\n60 abc\n\n"  # bad peak line
        "Name: nopeaks\nDB#: N1\nPrecursorMZ: 200\n\n"                                 # no Num Peaks
        "Name: zero\nDB#: Z1\nPrecursorMZ: 200\nNum Peaks: 0\n\n"                      # no peaks
        "Name: good\nDB#: G1\nPrecursorMZ: 200\nNum Peaks: 1\n50 1\n"
    )
    queries, report = read_query_spectra(write(tmp_path, "bad.msp", text))
    assert queries["spectrum_id"].to_list() == ["G1"]
    assert [(i.entry, i.identifier, i.reason, i.detail) for i in report.skipped] == [
        (1, "C1", entries.PEAK_COUNT, "'Num Peaks: 3' but 2 read"),
        (2, "U1", entries.UNREADABLE_PEAKS, "line 13: '60 abc'"),
        (3, "N1", entries.NO_PEAK_BLOCK, ""),
        (4, "Z1", entries.NO_PEAKS, "the entry lists no peaks"),
    ]
    assert [i.line for i in report.skipped] == [1, 8, 15, 19]
    # trial AF: a library's decimal-comma peak line got no hint where the same fault in an MGF did
    comma = "Name: comma\nDB#: K1\nPrecursorMZ: 200\nNum Peaks: 2\n50,1 1\n216,1022 6.94719e+06\n"
    _, report = read_query_spectra(write(tmp_path, "comma.msp", comma + "\n" + text.split("\n\n")[-1]))
    assert report.skipped[0].detail == ("line 5: '50,1 1' (a decimal comma? peaks need a decimal point: save the file "
                                        "with '.' as the decimal separator)")


def test_msp_records_without_blank_lines(tmp_path: Path) -> None:
    # 'Num Peaks: 0' then the next record at once, and a short record cut by the next Name: both named, and
    # the records after them are still read.
    text = ("Name: a\nDB#: A\nPrecursorMZ: 200\nNum Peaks: 0\n"
            "Name: b\nDB#: B\nPrecursorMZ: 200\nNum Peaks: 3\n50 1\n"
            "Name: c\nDB#: C\nPrecursorMZ: 210\nNum Peaks: 1\n60 2\n")
    queries, report = read_query_spectra(write(tmp_path, "flat.msp", text))
    assert queries["spectrum_id"].to_list() == ["C"] and queries["mz"].to_list() == [[60.0]]
    assert [(i.entry, i.identifier, i.reason) for i in report.skipped] == [
        (1, "A", entries.NO_PEAKS), (2, "B", entries.PEAK_COUNT)]
    assert report.n_entries == 3


def test_msp_pairs_forms() -> None:
    pairs = formats._msp_pairs
    assert pairs("55 102") == [(55.0, 102.0)]
    assert pairs("55\t102\t\"ann\"") == [(55.0, 102.0)]
    assert pairs("55 102 56 3 57 8") == [(55.0, 102.0), (56.0, 3.0), (57.0, 8.0)]
    assert pairs("55 102; 56 3;") == [(55.0, 102.0), (56.0, 3.0)]
    assert pairs("(55 102) (56,3) (57, 8)") == [(55.0, 102.0), (56.0, 3.0), (57.0, 8.0)]
    assert pairs("55:102 56:3") == [(55.0, 102.0), (56.0, 3.0)]
    assert pairs("55,102") == [(55.0, 102.0)]
    assert pairs("55 102 C4H7+") == [(55.0, 102.0)]
    assert pairs("55 102 3") == [(55.0, 102.0)]
    assert pairs("55") is None
    assert pairs("55 abc") is None


# ------------------------------------------------------------------------------------------ invalid peaks


def test_invalid_intensities_are_dropped_counted_and_named(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    peaks = "50 10\n60 -5\n70 nan\n80 inf\n90 -inf\n0 4\n100 0\n110 20\n"
    text = mgf("bad", "300", peaks) + mgf("good", "300", "50 1\n")
    path = write(tmp_path, "lib.mgf", text)
    with caplog.at_level(logging.WARNING, logger="ms2study.io.entries"):
        queries, report = read_query_spectra(path)
    # Zero intensity is valid (cleaning drops it later); m/z 0, negative, NaN and infinite intensities are not.
    assert queries["mz"][0].to_list() == [50.0, 100.0, 110.0]
    assert queries["intensity"][0].to_list() == [10.0, 0.0, 20.0]
    (issue,) = report.altered
    assert (issue.entry, issue.identifier, issue.reason) == (1, "bad", entries.INVALID_PEAKS_DROPPED)
    assert issue.detail == ("5 of 8 peaks dropped (2 negative intensity, 1 NaN intensity, 2 infinite intensity, "
                            "1 m/z not finite or <= 0)")
    assert report.n_peaks_dropped == 5
    assert "altered entry 1 (line 1, id 'bad'): invalid peaks dropped: 5 of 8 peaks dropped" in caplog.text
    index = library.index_library(path, tmp_path / "idx")
    assert index.manifest["n_peaks_dropped"] == 5
    assert index.manifest["altered_by_reason"] == {entries.INVALID_PEAKS_DROPPED: 1}
    assert index.manifest["altered_first"][0]["identifier"] == "bad"
    np.testing.assert_allclose(index.peaks(int(np.flatnonzero(index.metadata["library_id"] == "bad")[0]))[0],
                               [50.0, 110.0])


def test_invalid_peaks_in_msp_and_json(tmp_path: Path) -> None:
    msp = "Name: m\nPrecursorMZ: 300\nNum Peaks: 3\n50 10\n60 -1\n70 NaN\n"
    _, report = read_query_spectra(write(tmp_path, "x.msp", msp))
    assert [(i.reason, i.detail) for i in report.altered] == [
        (entries.INVALID_PEAKS_DROPPED, "2 of 3 peaks dropped (1 negative intensity, 1 NaN intensity)")]
    js = json.dumps([{"spectrum_id": "j", "Precursor_MZ": "300", "peaks_json": [[50, 10], [60, -2]]}])
    queries, report = read_query_spectra(write(tmp_path, "x.json", js))
    assert queries["mz"].to_list() == [[50.0]]
    assert report.altered[0].detail == "1 of 2 peaks dropped (1 negative intensity)"


# ------------------------------------------------------------------------------------------ JSON and files


def test_json_entries_and_errors(tmp_path: Path) -> None:
    records = [
        {"spectrum_id": "a", "Precursor_MZ": 150.5, "Ion_Mode": "Positive", "peaks_json": "[[50, 10]]"},
        "not an object",
        {"spectrum_id": "c", "Precursor_MZ": "150", "peaks_json": "[[50, 10, 3], [60]]"},   # ragged
        {"spectrum_id": "d", "Precursor_MZ": "150", "peaks_json": [[1e400, 1]]},            # overflow -> inf
        {"spectrum_id": "e", "Precursor_MZ": "150", "peaks": {"50": 10}},
        {"spectrum_id": "f", "Precursor_MZ": "150", "peaks_json": []},
    ]
    path = write(tmp_path, "lib.json", json.dumps(records).replace("1e+400", "1e400"))
    queries, report = read_query_spectra(path)
    assert queries["spectrum_id"].to_list() == ["a"] and queries["precursor_mz"].to_list() == [150.5]
    assert [(i.entry, i.identifier, i.reason) for i in report.skipped] == [
        (2, "lib.json:2", entries.NOT_OBJECT),
        (3, "c", entries.UNREADABLE_PEAKS),
        (4, "d", entries.NO_VALID_PEAKS),
        (5, "e", entries.UNREADABLE_PEAKS),
        (6, "f", entries.NO_PEAKS),
    ]
    for text, message in (("{not json", "not valid JSON"), ("5", "not a list of spectra"),
                          ('"text"', "not a list of spectra")):
        with pytest.raises(InputError, match=message):
            read_query_spectra(write(tmp_path, "bad.json", text))


def test_damaged_gzip_and_unknown_format(tmp_path: Path) -> None:
    good = gzip.compress(mgf("a", "200").encode())
    (tmp_path / "cut.mgf.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match=r"cut\.mgf\.gz.*cannot read the file"):
        read_query_spectra(tmp_path / "cut.mgf.gz")
    (tmp_path / "notgz.msp.gz").write_bytes(b"Name: x\n")
    with pytest.raises(InputError, match="cannot read the file"):
        library.index_library(tmp_path / "notgz.msp.gz", tmp_path / "idx")
    with pytest.raises(InputError, match="unknown query format"):
        read_query_spectra(write(tmp_path, "q.txt", "x"))


# ------------------------------------------------------------------------------------------ library builds


def test_library_without_precursors_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "ei.msp", GOLM.split("\n\n")[0] + "\n\nName: b\nNum Peaks: 1\n70 1\n")
    out = tmp_path / "idx"
    with pytest.raises(InputError) as err:
        library.index_library(path, out)
    text = str(err.value)
    assert "ei.msp" in text
    assert "no usable library spectrum (2 entries; 2 no valid precursor m/z)" in text
    assert "needs a precursor m/z" in text and "PrecursorMZ:" in text
    assert not (out / "manifest.json").exists()


def test_library_refusals_for_empty_file_and_cleaning(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no usable library spectrum \(0 entries; no entries found\).*holds no "):
        library.index_library(write(tmp_path, "empty.mgf", ""), tmp_path / "a")
    with pytest.raises(InputError, match="no usable library spectrum.*1 no peaks left after cleaning.*cleaning"):
        library.index_library(write(tmp_path, "high.mgf", mgf("h", "100", "99 1\n")), tmp_path / "b")


def test_library_duplicates_emptied_and_no_peak_entries_are_named(tmp_path: Path) -> None:
    text = (mgf("D", "300", "50 1\n") + mgf("D", "200", "60 1\n") + mgf("E", "100", "99.5 3\n")
            + mgf("N", "100", ""))
    index = library.index_library(write(tmp_path, "lib.mgf", text), tmp_path / "idx")
    meta = index.metadata
    # Suffixes follow the file order (the first D keeps its id), whatever the precursor order of the index.
    assert dict(zip(meta["library_id"], meta["precursor_mz"])) == {"D": 300.0, "D#2": 200.0}
    m = index.manifest
    assert m["n_entries"] == 4 and m["n_spectra"] == 2
    assert m["altered_by_reason"] == {entries.DUPLICATE_ID: 1}
    assert m["altered_first"][0] | {"file": None} == {
        "file": None, "entry": 2, "line": 6, "identifier": "D", "reason": entries.DUPLICATE_ID,
        "detail": "'D' -> 'D#2' (already used by entry 1 of lib.mgf)"}
    assert m["n_empty_after_cleaning"] == 1
    assert [(e["entry"], e["identifier"]) for e in m["empty_first"]] == [(3, "E")]
    assert m["skipped_by_reason"] == {entries.NO_PEAKS: 1}
    assert m["skipped_first"][0]["identifier"] == "N"


def test_report_counts_and_summary(tmp_path: Path) -> None:
    report = entries.ReadReport()
    built = build.build_library(
        formats.read_library_file(write(tmp_path, "l.mgf", mgf("a", "200") + mgf("a", None)), report), report=report)
    assert built.metadata["library_id"].to_list() == ["a"]
    assert report.counts() == {
        "files": [str(tmp_path / "l.mgf")], "n_entries": 2, "n_read": 2, "n_used": 1, "n_skipped": 1,
        "n_emptied": 0, "n_altered": 0, "n_peaks_dropped": 0,
        "skipped_by_reason": {entries.NO_PRECURSOR: 1}, "emptied_by_reason": {}, "altered_by_reason": {},
    }
    assert report.summary() == ("library l.mgf: 2 entries, 1 used; 1 skipped (1 no valid precursor m/z); "
                                "0 empty after cleaning; 0 altered; 0 invalid peaks dropped")
    assert report.skipped[0][:4] == (str(tmp_path / "l.mgf"), 2, "a", entries.NO_PRECURSOR)


def test_intensities_outside_float32_range(tmp_path: Path) -> None:
    # 1e39 cannot be stored as float32 (it would become inf): the spectrum is rescaled so it fits, its relative
    # intensities kept (trial M: such peaks had been dropped and the cosine fell from 1.0 to 0.01). 1e-300 becomes
    # 0: kept as 0, so cleaning drops it like any zero instead of leaving a spectrum of float32 zeros.
    path = write(tmp_path, "r.mgf", mgf("r", "300", "50 1e39\n60 1e-300\n70 5e38\n"))
    queries, report = read_query_spectra(path)
    assert queries["mz"].to_list() == [[50.0, 60.0, 70.0]]
    assert np.allclose(queries["intensity"].to_list()[0], [1e20, 0.0, 5e19], rtol=1e-6)
    assert [(i.reason, i.detail[:40]) for i in report.altered] == [
        (entries.INTENSITIES_RESCALED, "intensities up to 1e+39 divided by 1e+19")]
    index = library.index_library(path, tmp_path / "idx")
    np.testing.assert_array_equal(index.peaks(0)[0], [50.0, 70.0])
    tiny_only = write(tmp_path, "t.mgf", mgf("t", "300", "50 1e-300\n"))
    with pytest.raises(InputError, match="1 no peaks left after cleaning"):
        library.index_library(tiny_only, tmp_path / "idx2")


def test_huge_intensities_are_rescaled_and_named_so_scoring_does_not_overflow(tmp_path: Path) -> None:
    """Trial L: intensities of 1e30-1e37 (inside float32) summed to infinity in the entropy preparation, and
    `ms2study score` stopped with a ZeroDivisionError naming no file or record. Such a spectrum is divided by a power
    of ten (only relative intensities matter to MS/MS scoring) and the record is named."""
    from ms2study.identification.pairs import flatten_queries
    from ms2study.kernels import entropy

    # 60 peaks of 1e37-2e37: each fits float32, their sum (9e38) does not (a MassBank spectrum times 1e30 in the trial)
    values = [1e37 * (1 + k / 59) for k in range(60)]
    peaks = "".join(f"{50 + 5 * k} {v!r}\n" for k, v in enumerate(values))
    path = write(tmp_path, "huge.mgf", mgf("huge", "400", peaks) + mgf("plain", "300", "50 10\n60 20\n"))
    queries, report = read_query_spectra(path)
    assert [(i.identifier, i.reason) for i in report.altered] == [("huge", entries.INTENSITIES_RESCALED)]
    assert report.altered[0].detail.startswith("intensities up to 2e+37 divided by 1e+18 (relative intensities")
    huge = np.asarray(queries["intensity"][0], dtype=np.float64)
    assert huge.max() <= formats.MAX_INTENSITY and np.allclose(huge / huge.max(), np.array(values) / values[-1])
    assert queries["intensity"][1].to_list() == [10.0, 20.0]  # ordinary spectra untouched
    flat = flatten_queries(queries, None, "positive")
    prepared = entropy.prepare_entropy_peaks(flat.offsets, flat.mz, flat.intensity, 0.01, 0.05, True)
    assert np.isfinite(prepared[2]).all() and prepared[2].size == 62
    # the values as written are what broke the kernel
    with pytest.raises(SystemError):  # numba's wrapper of the ZeroDivisionError
        entropy.prepare_entropy_peaks(np.array([0, 60], dtype=np.int64), 50.0 + 5.0 * np.arange(60),
                                      np.array(values, dtype=np.float32), 0.01, 0.05, True)


def test_a_peak_with_a_decimal_comma_is_named_with_the_likely_cause(tmp_path: Path) -> None:
    """Trial L: a file saved in a comma locale failed with "'50,01570' is not a number" and no hint at the cause."""
    path = write(tmp_path, "c.mgf", mgf("comma", "300", "50,01570 205,5\n60 20\n") + mgf("ok", "300"))
    queries, report = read_query_spectra(path)
    assert queries["spectrum_id"].to_list() == ["ok"]
    (skipped,) = report.skipped
    assert skipped.reason == entries.UNREADABLE_PEAKS and skipped.identifier == "comma"
    assert skipped.detail == ("line 4: '50,01570' is not a number (a decimal comma? peaks need a decimal point: save "
                              "the file with '.' as the decimal separator)")


def test_an_mzmine_or_fbmn_entry_is_named_by_its_feature_id(tmp_path: Path) -> None:
    """Trial L: MZmine's MGF export (FEATURE_ID, no TITLE) was named by position ('mzmine.mgf:1'), so a hit could not
    be traced back to its feature; GNPS FBMN files carry SCANS."""
    text = ("BEGIN IONS\nFEATURE_ID=run.mzML msn trees:7\nPEPMASS=300\n50 10\n60 20\nEND IONS\n"
            "BEGIN IONS\nSCANS=42\nPEPMASS=300\n50 10\n60 20\nEND IONS\n"
            "BEGIN IONS\nTITLE=titled\nSCANS=43\nPEPMASS=300\n50 10\n60 20\nEND IONS\n"
            "BEGIN IONS\nPEPMASS=300\n50 10\n60 20\nEND IONS\n")
    queries, _ = read_query_spectra(write(tmp_path, "m.mgf", text))
    assert queries["spectrum_id"].to_list() == ["run.mzML msn trees:7", "42", "titled", "m.mgf:4"]


def test_a_precursor_written_as_precursor_mz_with_a_slash_is_read_and_an_unread_one_named(tmp_path: Path) -> None:
    """Trial AF: a record with "Precursor m/z: 170.1539" was skipped as "no precursor m/z given", the field unnamed."""
    text = ("Name: slash\nDB#: S1\nPrecursor m/z: 170.1539\nNum Peaks: 1\n50 1\n\n"
            "Name: odd\nDB#: O1\nPrecursor ion m/z: 170.1539\nPrecursor_type: [M+H]+\nNum Peaks: 1\n50 1\n")
    queries, report = read_query_spectra(write(tmp_path, "slash.msp", text))
    assert queries["spectrum_id"].to_list() == ["S1"] and queries["precursor_mz"].to_list() == [170.1539]
    assert report.skipped[0].detail.endswith("; field(s) PRECURSORIONM/Z not read as one")


def test_an_electron_ionisation_record_is_named_as_such_not_as_a_missing_precursor(tmp_path: Path) -> None:
    """Trial AR: RIKEN's GC-EI records were skipped as "no precursor m/z given", which invited adding one."""
    text = ("NAME: 1-NITROPYRENE; EI-B; MS\nRETENTIONINDEX: 1872.2\nCOLLISIONENERGY: 70eV\nIONMODE: Positive\n"
            "Num Peaks: 2\n51\t27\n55\t80\n\n"
            "NAME: plain\nDB#: P1\nIONMODE: Positive\nNum Peaks: 1\n50 1\n\n"
            "NAME: kept\nDB#: K1\nPrecursorMZ: 170.15\nIONMODE: Positive\nNum Peaks: 1\n50 1\n")
    queries, report = read_query_spectra(write(tmp_path, "ei.msp", text))
    assert queries["spectrum_id"].to_list() == ["K1"]
    details = [s.detail for s in report.skipped]
    assert len(details) == 2 and "an electron-ionisation (GC-MS) spectrum" in details[0]
    assert "LC-MS/MS library search cannot identify it" in details[0]
    assert details[1].startswith("no precursor m/z given")
