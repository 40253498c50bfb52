"""Per-run tables of a large study are paged (trial AK: at 64-80 runs the sheet, the per-sample results and the
detection-per-run tables ran unpaged, the page 49,000 px tall); small studies keep plain tables."""

from __future__ import annotations

import polars as pl
from test_report import _itable_header, _itable_rows

from ms2study.reporting.html import LONG_TABLE_ROWS, run_table
from ms2study.reporting.sections import overview_section, samples_section


def test_a_long_per_run_table_is_paged_and_a_short_one_plain() -> None:
    n = LONG_TABLE_ROWS + 10
    sheet = pl.DataFrame({"sample_id": [f"S{i:02d}" for i in range(n)], "file": [f"S{i:02d}.mzML" for i in range(n)],
                          "group": ["case", "control"] * (n // 2)})
    html = overview_section(sheet, "samples.tsv")
    table_id = html.split('id="')[1].split('"')[0]
    assert _itable_header(html, table_id) == ["sample", "file", "group"]
    assert len(_itable_rows(html, table_id)) == n
    stats = [{"sample_id": f"S{i:02d}", "features": 100 + i, "ms2_scans": "NA"} for i in range(n)]
    runs = samples_section(stats, [])
    table_id = runs.split('id="')[1].split('"')[0]
    rows = _itable_rows(runs, table_id)
    assert rows[0][:3] == ["S00", 100.0, None]  # a number column stays numeric; "NA" is empty
    short = overview_section(sheet.head(5), "samples.tsv")
    assert short.count("<tr>") == 6 and "dataTable" not in short
    assert run_table(["a"], [[1]] * LONG_TABLE_ROWS, "x").count("<tr>") == LONG_TABLE_ROWS + 1
