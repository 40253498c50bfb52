"""Samples × features tables from elsewhere (MZmine, GNPS, MetaboAnalyst, R exports) for ``ms2study model``.

A study processed by another tool arrives as a TSV, CSV (comma or semicolon) or Parquet table in either orientation:
samples as rows or samples as columns. The orientation is detected by matching the sample sheet's ids against the
first column and against the header, and the decision is returned as a sentence so the user sees what was assumed.
R's ``write.csv`` habit of leaving the row-name column without a header is accepted. Values become floats; empty
cells, NA and the other ``core.missing`` tokens are missing; raw intensities (all values >= 0 and large) are
log1p-transformed, with zeros treated as not detected, so the table feeds the same half-minimum imputation as the
pipeline's feature matrix.
``delimited_rows`` (the cells of a TSV, CSV or Parquet file as text) is shared with the sample-sheet reader
(``io.samplesheet``). ``refuse_repeated_ids`` and ``refuse_answers_in_table`` refuse a sheet with a sample on several
rows and a table holding the sheet's columns or a copy of the outcome. Imports only ``core``.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.core.missing import is_missing

# Values above this (with none negative) are taken as raw intensities rather than already-logged ones.
RAW_INTENSITY_THRESHOLD = 1000.0


def _read_rows(path: Path) -> list[list[str]]:
    """All cells of a delimited text file as strings; the delimiter is sniffed from the first line."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        counts = {d: first.count(d) for d in ("\t", ";", ",")}
        delimiter = max(counts, key=counts.get)
        if counts[delimiter] == 0:
            raise InputError("found no tab, semicolon or comma in the first line", file=str(path),
                             fix="give a delimited table (TSV or CSV) or Parquet")
        rows = [[cell.strip() for cell in row] for row in csv.reader(handle, delimiter=delimiter)]
    rows = [r for r in rows if any(r)]
    if len(rows) < 2:
        raise InputError("the table has fewer than two lines", file=str(path))
    width = max(len(r) for r in rows[1:])
    if len(rows[0]) == width - 1:  # R write.csv: no header for the row names
        rows[0] = ["", *rows[0]]
    return rows


def delimited_rows(path: Path) -> list[list[str]]:
    """Every row of a table as text cells, header first: Parquet (None becomes "") or delimited text (tab,
    semicolon or comma, sniffed from the first line; cells stripped, empty lines dropped, a header one cell short of
    the rows gets an empty first name). Raises InputError for text without a delimiter or with fewer than two
    lines."""
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = pl.read_parquet(path)
        return [list(frame.columns)] + [["" if v is None else str(v) for v in row] for row in frame.iter_rows()]
    return _read_rows(path)


def id_column_check(path: str | Path, sheet_path: str | Path, sheet: pl.DataFrame, id_column: str | None,
                    matched: int) -> None:
    """Refuse a sample sheet whose id column is not the one naming the table's samples: raises InputError when
    another column of ``sheet`` (as read, its id column renamed ``sample_id``) holds more of the table's sample names
    (its header or first column) than the ``matched`` ids, naming that column for ``--id-column``. A fresh user's
    trial: a sheet whose first column held R's row numbers (1..45) matched 4 metabolites whose ids were 16, 21, 25
    and 39, and ``ms2study model`` went on to model those metabolites as samples."""
    if matched >= sheet.height:  # every id matched: no other column can match more; the table is not read again
        return
    rows = delimited_rows(Path(path))
    names = {c for c in rows[0][1:] if c} | {r[0] for r in rows[1:] if r and r[0]}
    best, best_n = None, matched
    for column in sheet.columns:
        if column == "sample_id":
            continue
        n = len(set(sheet[column].cast(pl.Utf8).drop_nulls().to_list()) & names)
        if n > best_n:
            best, best_n = column, n
    if best is not None:
        used = id_column or "its first column (or sample_id)"
        raise InputError(f"only {matched} of the sheet's {sheet.height} ids in {used} name a sample of the table "
                         f"{Path(path).name}, while its column '{best}' names {best_n}: the id column is not the one "
                         "naming the table's samples", file=str(sheet_path),
                         fix=f"pass --id-column '{best}'")


def _parse(cell: str, path: Path, row: str, column: str) -> float:
    if is_missing(cell):
        return math.nan
    try:
        return float(cell)
    except ValueError as err:
        comma = bool(re.fullmatch(r"[+-]?\d+,\d+", cell.strip()))
        raise InputError(f"cell at row '{row}', column '{column}' is '{cell}', not a number"
                         + (" (a decimal comma?)" if comma else ""), file=str(path),
                         fix="leave only numbers with a decimal point, and NA or an empty cell for a missing value "
                             "(Excel's #N/A is not read as missing: replace it)") from err


class SampleTable(NamedTuple):
    """What ``read_sample_table`` returns: ``table`` (sample_id + one Float64 column per feature), ``note`` (what was
    detected, for the user) and ``log_transformed`` (whether the values were log1p-transformed; False: used as
    given, e.g. already log-scaled)."""

    table: pl.DataFrame
    note: str
    log_transformed: bool


def _near_misses(absent: list[str], names: list[str]) -> list[tuple[str, str]]:
    """(sheet id, table name) pairs among ``absent`` ids that equal a table name once '-', '_', '.', spaces and case
    are ignored."""
    def key(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch not in "-_. ")
    by_key = {key(n): n for n in names if n}
    return [(s, by_key[key(s)]) for s in absent if key(s) in by_key and by_key[key(s)] != s]


def read_sample_table(path: str | Path, sample_ids: list[str], log_transform: str = "auto") -> SampleTable:
    """Read a samples × features table (``SampleTable``). Only samples of ``sample_ids`` found in the table are
    returned, in the table's order. ``log_transform``: "auto" (log1p when the values look like raw intensities),
    "yes" or "no". Raises InputError naming the file for a missing file, no sheet id in the table, a cell that is
    not a number, or a sample twice."""
    path = Path(path)
    if not path.exists():
        raise InputError("table does not exist", file=str(path))
    rows = delimited_rows(path)
    header, body = rows[0], rows[1:]
    wanted = set(sample_ids)
    in_header = [i for i, name in enumerate(header) if i > 0 and name in wanted]
    in_first_column = [j for j, row in enumerate(body) if row and row[0] in wanted]
    if not in_header and not in_first_column:
        lower = {w.lower() for w in wanted}
        case_only = any(n.lower() in lower for n in header[1:] + [r[0] for r in body if r])
        raise InputError(
            f"none of the sample sheet's ids (e.g. {sorted(wanted)[:3]}) is in the table's header (e.g. "
            f"{header[1:4]}) or first column (e.g. {[r[0] for r in body[:3] if r]})"
            + ("; they differ in upper and lower case only" if case_only else ""),
            file=str(path), fix="use the same sample names in the table and the sample sheet (the sheet's id column: "
                                "--id-column)",
        )
    if len(in_header) >= len(in_first_column):
        orientation = "samples as columns, features as rows"
        samples = [header[i] for i in in_header]
        features = [row[0] or f"row{j + 1}" for j, row in enumerate(body)]
        values = np.array([[_parse(body[j][i] if i < len(body[j]) else "", path, features[j], header[i])
                            for j in range(len(body))] for i in in_header], dtype=np.float64)
    else:
        orientation = "samples as rows, features as columns"
        samples = [body[j][0] for j in in_first_column]
        features = [name or f"col{i}" for i, name in enumerate(header)][1:]
        values = np.array([[_parse(body[j][i] if i < len(body[j]) else "", path, body[j][0], header[i])
                            for i in range(1, len(header))] for j in in_first_column], dtype=np.float64)
    if len(set(samples)) != len(samples):
        twice = sorted({s for s in samples if samples.count(s) > 1})
        raise InputError(f"sample(s) {', '.join(twice[:5])} appear twice in the table", file=str(path),
                         fix="keep one column (or row) per sample")
    infinite = int(np.isinf(values).sum())  # a log of zero written out (-inf): not measured (a trial's log10 table)
    values = np.where(np.isinf(values), np.nan, values)
    finite = values[np.isfinite(values)]
    looks_raw = finite.size > 0 and finite.min() >= 0 and finite.max() > RAW_INTENSITY_THRESHOLD
    apply_log = log_transform == "yes" or (log_transform == "auto" and looks_raw)
    if apply_log:
        values = np.where(values > 0, np.log1p(np.where(values > 0, values, 0.0)), np.nan)
        how = "log1p-transformed (zeros read as not detected)"
    else:
        how = "used as given" + (" (they look already log-scaled)" if log_transform == "auto" else "")
    absent = [s for s in sample_ids if s not in set(samples)]
    note = (f"table {path.name}: {orientation}; {len(samples)} samples x {len(features)} features; values {how}; "
            f"{int(np.isnan(values).sum())} missing cells"
            + (f" ({infinite} of them infinite, e.g. the log of a zero)" if infinite else ""))
    if absent:
        note += f"; {len(absent)} sample(s) of the sheet not in the table: {', '.join(absent[:10])}"
        near = _near_misses(absent, header[1:] + [r[0] for r in body if r])
        if near:  # trial AQ: half the sheet's ids written HU-011 for the table's HU_011, 92 samples lost with no hint
            note += (f" (the table has {', '.join(f'{t} for {s}' for s, t in near[:5])}: ids that differ only in '-', "
                     "'_', '.', spaces or case are not matched; write them alike)")
    # what the table holds beyond the sheet's ids (trial AQ: 20 table samples missing from the sheet were never named)
    read_columns, read_rows = set(in_header), set(in_first_column)
    unread = ([h for i, h in enumerate(header) if i > 0 and i not in read_columns] if orientation.startswith(
        "samples as columns") else [row[0] for j, row in enumerate(body) if row and j not in read_rows])
    if unread:
        what = "column(s)" if orientation.startswith("samples as columns") else "row(s)"
        note += (f"; {len(unread)} {what} of the table not among the sheet's ids, left out: "
                 f"{', '.join(unread[:10])}{' ...' if len(unread) > 10 else ''}")
    unique = list(dict.fromkeys(features))
    if len(unique) != len(features):  # duplicated feature names: make them unique rather than fail
        seen: dict[str, int] = {}
        renamed = []
        for f in features:
            seen[f] = seen.get(f, 0) + 1
            renamed.append(f if seen[f] == 1 else f"{f}.{seen[f]}")
        features = renamed
    columns = {f: pl.Series(f, values[:, j]).fill_nan(None) for j, f in enumerate(features) if f != "sample_id"}
    return SampleTable(pl.DataFrame({"sample_id": pl.Series(samples, dtype=pl.Utf8), **columns}), note, apply_log)


def refuse_repeated_ids(samples: pl.DataFrame, path: str) -> None:
    """Raise InputError when a sample id has several rows in the sheet (trial AQ: three repeated rows, two of them with
    the other gender, became extra samples whose measurements sat in training and test folds alike)."""
    repeated = samples.filter(pl.col("sample_id").is_duplicated())
    if repeated.height == 0:
        return
    ids = sorted(set(repeated["sample_id"].cast(pl.Utf8).to_list()))
    differ = [c for c in samples.columns if c != "sample_id" and
              repeated.group_by("sample_id").agg(pl.col(c).n_unique()).filter(pl.col(c) > 1).height]
    raise InputError(f"sample id(s) {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''} appear on more than one row "
                     "of the sample sheet" + (f", with different {', '.join(differ[:5])}" if differ else ""),
                     file=str(path), fix="give each sample one row (repeated injections of one sample: distinct ids "
                                         "and a subject_id column naming the sample they come from)")


def refuse_answers_in_table(table: pl.DataFrame, samples: pl.DataFrame, spec: dict, path: str) -> None:
    """Raise InputError when the table holds the sample sheet's columns (a name of the sheet, case and spaces aside,
    with the sheet's values: the same ranks over 4 samples or more) or a copy of the outcome (a continuous one at
    |rank correlation| >= 0.9999 over 10 samples or more; a categorical one split exactly by a column of as many
    values): the model would read the answer from it (trial AQ: age and BMI joined into the feature table gave
    "predicts age, R² 1.00")."""
    def key(name: str) -> str:
        return name.strip().lower()

    def same_ranks(x: pl.Series, y: pl.Series) -> bool:
        pair = pl.DataFrame({"x": x.cast(pl.Float64, strict=False), "y": y.cast(pl.Float64, strict=False)}).drop_nulls()
        return (pair.height >= 4 and pair["x"].n_unique() > 1 and pair["y"].n_unique() > 1
                and abs(np.corrcoef(pair["x"].rank().to_numpy(), pair["y"].rank().to_numpy())[0, 1]) >= 0.9999)

    sheet_names = {key(c): c for c in samples.columns if c != "sample_id"}
    joined = table.join(samples.rename({c: f"_sheet_{c}" for c in samples.columns if c != "sample_id"}),
                        on="sample_id", how="inner")
    # a table column named as a sheet column and holding its values (a metabolite named like a clinical measurement,
    # e.g. glucose beside a blood glucose, holds other values and stays)
    named = [c for c in table.columns if c != "sample_id" and key(c) in sheet_names
             and same_ranks(joined[c], joined[f"_sheet_{sheet_names[key(c)]}"])]
    copies = []
    if spec["column"] in samples.columns and not named:
        y_column = f"_sheet_{spec['column']}"
        both = joined.filter(pl.col(y_column).is_not_null() & (pl.col(y_column).str.strip_chars() != ""))
        y = both[y_column]
        for column in (c for c in table.columns if c != "sample_id"):
            x = both[column].cast(pl.Float64, strict=False)
            if x.null_count() or both.height < 4 or x.n_unique() < 2:
                continue
            if spec.get("type") == "continuous":  # ranks: the table may have been log-transformed on reading
                if both.height >= 10 and same_ranks(x, y):
                    copies.append(column)
            elif x.n_unique() == y.n_unique() == pl.DataFrame({"x": x, "y": y}).unique().height:
                copies.append(column)
    if named or copies:
        which = (f"column(s) {', '.join(named[:5])} of the sample sheet" if named else
                 f"column(s) {', '.join(copies[:5])}, a copy of the outcome {spec['column']}")
        raise InputError(f"the table holds {which}: metadata merged into the feature table? The model would read the "
                         "answer from it", file=str(path),
                         fix="remove the sample sheet's columns from the feature table (the sheet gives them)")
