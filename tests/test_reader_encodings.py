"""Spectrum files as editors and instruments save them: byte-order marks, CRLF, gzip, Windows-1252, UTF-16; and
records that state no ion mode, for queries and libraries alike.

A fresh user's MGF saved with a byte-order mark lost its first record ("10 records" indexed as 9, no reason given)
and an MSP its first Name; a Latin-1 "Müller" came back as "M\ufffdller". Every input is written by the test.
"""

from __future__ import annotations

import codecs
import gzip
import json
import logging
from pathlib import Path

import pytest

from ms2study.io import formats
from ms2study.io.entries import ReadReport
from ms2study.io.queries import read_query_spectra
from ms2study.library import index as library


def mgf_records(n: int, **keys: str) -> str:
    extra = "".join(f"{k}={v}\n" for k, v in keys.items())
    return "".join(f"BEGIN IONS\nTITLE=r{k}\nNAME=c{k}\nPEPMASS={200 + k}\nIONMODE=positive\n{extra}"
                   f"50 10\n60 20\nEND IONS\n\n" for k in range(1, n + 1))


def msp_records(n: int) -> str:
    return "".join(f"Name: c{k}\nDB#: r{k}\nPrecursorMZ: {200 + k}\nIon_mode: P\nNum Peaks: 2\n50 10\n60 20\n\n"
                   for k in range(1, n + 1))


def save(tmp_path: Path, name: str, text: str, encoding: str = "utf-8", bom: bool = False,
         crlf: bool = False) -> Path:
    """``text`` written as an editor would: in ``encoding``, with a UTF-8 byte-order mark and CRLF line ends
    when asked, gzip-compressed when ``name`` ends in .gz."""
    data = (text.replace("\n", "\r\n") if crlf else text).encode(encoding)
    data = (codecs.BOM_UTF8 if bom else b"") + data
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


VARIANTS = [pytest.param(ext, crlf, id=f"{ext}{'-crlf' if crlf else ''}")
            for ext in ("", ".gz") for crlf in (False, True)]


# ------------------------------------------------------------------------------------------ byte-order mark

@pytest.mark.parametrize("gz, crlf", VARIANTS)
def test_mgf_with_byte_order_mark_keeps_its_first_record(gz: str, crlf: bool, tmp_path: Path) -> None:
    path = save(tmp_path, f"bom.mgf{gz}", mgf_records(10), bom=True, crlf=crlf)
    table, report = read_query_spectra(path)
    assert table["spectrum_id"].to_list() == [f"r{k}" for k in range(1, 11)]
    assert table["name"][0] == "c1"
    assert (report.n_entries, report.n_used, report.issues, report.file_notes) == (10, 10, [], [])
    built = library.index_library(path, tmp_path / "idx")
    assert built.metadata.height == 10
    assert sorted(built.metadata["library_id"].to_list()) == sorted(f"r{k}" for k in range(1, 11))
    assert (built.manifest["n_entries"], built.manifest["n_skipped"], built.manifest["file_notes"]) == (10, 0, [])


@pytest.mark.parametrize("gz, crlf", VARIANTS)
def test_msp_with_byte_order_mark_keeps_its_first_name(gz: str, crlf: bool, tmp_path: Path) -> None:
    path = save(tmp_path, f"bom.msp{gz}", msp_records(3), bom=True, crlf=crlf)
    table, report = read_query_spectra(path)
    assert table["name"].to_list() == ["c1", "c2", "c3"]
    assert table["spectrum_id"].to_list() == ["r1", "r2", "r3"]
    meta = library.index_library(path, tmp_path / "idx").metadata.sort("library_id")
    assert meta["name"].to_list() == ["c1", "c2", "c3"]
    assert report.n_entries == 3 and not report.issues


def test_byte_order_mark_inside_a_file_joined_with_cat(tmp_path: Path) -> None:
    """``cat a.mgf b.mgf`` of two files saved with a byte-order mark puts one at the start of b's first record."""
    bom = codecs.BOM_UTF8
    path = tmp_path / "joined.mgf"
    path.write_bytes(bom + mgf_records(2).encode() + bom + mgf_records(1).replace("r1", "b1").encode())
    table, report = read_query_spectra(path)
    assert table["spectrum_id"].to_list() == ["r1", "r2", "b1"] and report.n_entries == 3
    msp = tmp_path / "joined.msp"
    msp.write_bytes(bom + msp_records(1).encode() + bom + msp_records(1).replace("c1", "d1").encode())
    table, _ = read_query_spectra(msp)
    assert table["name"].to_list() == ["c1", "d1"]


def test_json_with_byte_order_mark(tmp_path: Path) -> None:
    records = [{"spectrum_id": "j1", "Compound_Name": "Müller", "Precursor_MZ": "200", "peaks_json": [[50, 10]]}]
    path = save(tmp_path, "bom.json", json.dumps(records, ensure_ascii=False), bom=True)
    table, report = read_query_spectra(path)
    assert table["spectrum_id"].to_list() == ["j1"] and table["name"].to_list() == ["Müller"]
    assert not report.file_notes


# ------------------------------------------------------------------------------------------ not UTF-8

@pytest.mark.parametrize("gz", ["", ".gz"])
def test_windows_1252_file_is_read_as_such_with_one_warning(gz: str, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    text = ("Name: Müller acid\nDB#: Mü-1\nPrecursorMZ: 201\nIon_mode: P\nNum Peaks: 1\n50 10\n\n"
            "Name: Smith’s ester\nDB#: s-2\nPrecursorMZ: 202\nComment: 5 µg\nNum Peaks: 1\n50 10\n\n")
    path = save(tmp_path, f"cp1252.msp{gz}", text, encoding="cp1252")
    with caplog.at_level(logging.WARNING):
        table, report = read_query_spectra(path)
    assert table["name"].to_list() == ["Müller acid", "Smith’s ester"]
    assert table["spectrum_id"].to_list() == ["Mü-1", "s-2"]
    notes = [r.getMessage() for r in caplog.records if formats.NOT_UTF8 in r.getMessage()]
    assert notes == [(f"queries {path}: {formats.NOT_UTF8} (first at line 1: 'Name: Müller acid'); "
                      "save it as UTF-8 to silence this")]
    assert report.file_notes == [(str(path), notes[0].split(": ", 1)[1])]
    built = library.index_library(path, tmp_path / "idx")
    assert built.metadata.sort("library_id")["name"].to_list() == ["Müller acid", "Smith’s ester"]
    assert built.manifest["file_notes"] == [{"file": path.name, "note": report.file_notes[0][1]}]


def test_non_utf8_bytes_far_into_a_file_neither_lose_nor_repeat_records(tmp_path: Path) -> None:
    """The first bytes that are not UTF-8 come after many (read) records: the rest is read as Windows-1252,
    every record once, in order, even at the end of a gzip stream and with CRLF line ends."""
    head = mgf_records(400)
    tail = "BEGIN IONS\nTITLE=late\nNAME=Müller\nPEPMASS=300\n50 10\nEND IONS\n"
    for name in ("late.mgf", "late.mgf.gz"):
        path = save(tmp_path, name, head + tail, encoding="cp1252", crlf=True)
        report = ReadReport(what="queries")
        got = list(formats.read_library_file(path, report))
        assert [r.identifier for r in got] == [f"r{k}" for k in range(1, 401)] + ["late"]
        assert got[-1].fields["NAME"] == "Müller" and got[-1].line == 3601  # 9 lines a record
        assert len(report.file_notes) == 1 and "first at line 3603: 'NAME=Müller'" in report.file_notes[0][1]


def test_file_joined_from_utf8_and_windows_1252_reads_each_line_right(tmp_path: Path) -> None:
    path = tmp_path / "joined.mgf"
    path.write_bytes(mgf_records(1).replace("NAME=c1", "NAME=Café").encode("utf-8")
                     + mgf_records(1).replace("r1", "r2").replace("NAME=c1", "NAME=Müller").encode("cp1252"))
    report = ReadReport()
    got = list(formats.read_library_file(path, report))
    assert [r.fields["NAME"] for r in got] == ["Café", "Müller"]
    assert len(report.file_notes) == 1 and "first at line 12: 'NAME=Müller'" in report.file_notes[0][1]


def test_utf8_file_is_read_strictly_without_a_note(tmp_path: Path) -> None:
    path = save(tmp_path, "utf8.msp", msp_records(1).replace("c1", "Müller €"))
    table, report = read_query_spectra(path)
    assert table["name"].to_list() == ["Müller €"] and report.file_notes == []


def test_windows_1252_json_and_undefined_bytes(tmp_path: Path) -> None:
    body = '[{"spectrum_id": "j1", "Compound_Name": "M\xfcller", "Precursor_MZ": "200", "peaks_json": [[50, 10]]}]'
    path = tmp_path / "cp.json"
    path.write_bytes(body.encode("latin-1"))
    report = ReadReport()
    got = list(formats.read_library_file(path, report))
    assert got[0].fields["COMPOUNDNAME"] == "Müller"
    assert len(report.file_notes) == 1 and "first at line 1" in report.file_notes[0][1]
    # 0x81 is undefined in Windows-1252: read as its Latin-1 code point, never an error
    odd = tmp_path / "odd.mgf"
    odd.write_bytes(mgf_records(1).replace("NAME=c1", "NAME=a\x81b\xe9").encode("latin-1"))
    assert next(formats.read_library_file(odd, ReadReport())).fields["NAME"] == "a\x81bé"


def test_utf16_file_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "notepad.msp"
    path.write_bytes(msp_records(2).replace("\n", "\r\n").encode("utf-16"))  # Notepad's "Unicode"
    table, report = read_query_spectra(path)
    assert table["name"].to_list() == ["c1", "c2"] and report.file_notes == []


# ------------------------------------------------------------------------------------------ no ion mode

def test_queries_without_ion_mode_are_counted_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = (mgf_records(1) + "".join(f"BEGIN IONS\nTITLE=n{k}\nPEPMASS=300\n50 10\nEND IONS\n" for k in range(1, 6))
            + "BEGIN IONS\nTITLE=z\nPEPMASS=300\nCHARGE=0\n50 10\nEND IONS\n")
    path = save(tmp_path, "modes.mgf", text)
    with caplog.at_level(logging.WARNING):
        table, _ = read_query_spectra(path, default_ion_mode="negative")
    assert table["ion_mode"].to_list() == ["positive"] + [None] * 6  # search behaviour unchanged: null, default later
    lines = [r.getMessage() for r in caplog.records if "state no ion mode" in r.getMessage()]
    assert lines == [(f"queries {path}: 6 of 7 records state no ion mode (no IONMODE / Ion_mode, Ionization, CHARGE "
                      "or adduct sign): searched as negative; add IONMODE= (MGF) or Ion_mode: (MSP) where that is "
                      "wrong ('n1', 'n2', 'n3', ...)")]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        read_query_spectra(save(tmp_path, "stated.msp", msp_records(2)))
    assert "state no ion mode" not in caplog.text


def test_library_records_without_ion_mode_are_counted_per_file(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    a = save(tmp_path, "a.msp", msp_records(2) + "Name: x\nDB#: lx\nPrecursorMZ: 250\nNum Peaks: 1\n50 10\n")
    b = save(tmp_path, "b.mgf", mgf_records(2).replace("TITLE=r", "TITLE=b"))
    with caplog.at_level(logging.INFO, logger="ms2study.io.entries"):
        built = library.index_library([a, b], tmp_path / "idx")
    assert built.metadata.filter(built.metadata["library_id"] == "lx")["ion_mode"].to_list() == [None]
    lines = [r.getMessage() for r in caplog.records if "state no ion mode" in r.getMessage()]
    assert lines == [("library a.msp: 1 of 3 records state no ion mode (no IONMODE / Ion_mode, Ionization, CHARGE or "
                      "adduct sign): compared with queries of either ion mode ('lx')")]


def test_old_mac_line_ends_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "mac.msp"
    path.write_bytes(codecs.BOM_UTF8 + msp_records(2).replace("\n", "\r").encode())
    table, _ = read_query_spectra(path)
    assert table["name"].to_list() == ["c1", "c2"]
