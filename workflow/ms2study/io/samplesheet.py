"""The one sample-sheet reader: a table with one row per sample, every cell kept as text.

The workflow's sheet (a study's ``samples.tsv``, and the ``results/study/samples.tsv`` the sheet rule writes) is
tab-separated with ``#`` comment lines and is read as written; ``study.load_sample_sheet`` validates it further
(schema, unique ids, files), and the models, differential and report stages read the written copy. A sheet brought
to ``ms2study model`` from elsewhere may also be CSV (comma or semicolon) or Parquet, with its id column under any
name (``any_format``). Missing values stay text here; ``core.missing.is_missing`` says which cells mean "not
recorded". Imports only ``core`` and ``io.sampletable``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ms2study.core.errors import InputError
from ms2study.io.sampletable import delimited_rows

log = logging.getLogger(__name__)


def read_sample_sheet(path: str | Path, id_column: str | None = None, *, any_format: bool = False,
                      required: Sequence[str] = ("sample_id",)) -> pl.DataFrame:
    """Read a sample sheet as a frame of strings (Utf8), one row per sample, column names stripped.

    Default: tab-separated text, ``#`` lines are comments, cells as written (polars, no type inference).
    ``any_format``: TSV, CSV (comma or semicolon, sniffed) or Parquet, cells stripped, empty lines dropped, a column
    without a name called ``column{i}``; the id column (``id_column``, else ``sample_id``, else the first column)
    becomes ``sample_id``. Without ``any_format`` an ``id_column`` other than sample_id is renamed too.
    Raises InputError naming the file when it does not exist, cannot be parsed, lacks ``id_column``, or lacks a
    column of ``required`` (after the renaming).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("sample sheet does not exist", file=str(path), fix="pass the study's samples.tsv")
    if any_format:
        rows = delimited_rows(path)
        header = [h or f"column{i}" for i, h in enumerate(rows[0])]
        sheet = pl.DataFrame({h: [r[i] if i < len(r) else None for r in rows[1:]] for i, h in enumerate(header)},
                             schema={h: pl.Utf8 for h in header}) if header else pl.DataFrame()
        id_column = id_column or ("sample_id" if "sample_id" in header else header[0])
    else:
        if not path.read_bytes().strip():
            raise InputError("the sample sheet is empty (0 bytes or only blank lines)", file=str(path),
                             fix="write a tab-separated header line 'sample_id<TAB>file' (then any outcome "
                                 "columns) and one row per sample; or delete the file to take every mzML/mzXML "
                                 "in the study folder as a sample")
        try:
            sheet = pl.read_csv(io.BytesIO(_utf8(path)), separator="\t", infer_schema_length=0, comment_prefix="#")
        except InputError:
            raise
        except Exception as err:  # polars raises several error types for malformed text
            raise InputError(f"cannot read as a tab-separated table ({err})", file=str(path),
                             fix="save the sheet as tab-separated text (.tsv) with a header line 'sample_id<TAB>"
                                 "file' and the same number of cells in every row") from err
        sheet = sheet.rename({c: c.strip() for c in sheet.columns})
        _refuse_lookalike_headers(sheet, path)
        # rows without a single cell (Excel's trailing empty row, "\t\t\t"): a trial got "sample 'None' ... sample_id
        # is a required property" for one
        blank = pl.all_horizontal(pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in sheet.columns)
        sheet = sheet.filter(~blank) if sheet.width else sheet
        sheet = _without_nameless_columns(sheet, path)
        _refuse_other_separators(sheet, path)
    if id_column is not None and id_column != "sample_id":
        if id_column not in sheet.columns:
            raise InputError(f"no column '{id_column}' (columns: {', '.join(sheet.columns)})", file=str(path),
                             fix="pass --id-column with the sample id column")
        sheet = sheet.drop("sample_id", strict=False).rename({id_column: "sample_id"})
    check_columns(sheet, required, str(path))
    return sheet


SUBJECT_COLUMN = "subject_id"  # the runs of one subject (modelling.subjects groups them)
# the columns ms2study reads by name; a header that is one of them written another way ("Sample Type") was ignored,
# so pooled QCs were taken as samples and the batches and run order dropped, unsaid (trial W). They are also the
# columns of the run-level study stages' sheet (``run_sheet``).
READ_COLUMNS = ("sample_id", "file", "sample_type", "injection_order", "batch", SUBJECT_COLUMN)


def _without_nameless_columns(sheet: pl.DataFrame, path: Path) -> pl.DataFrame:
    """The sheet without its columns that have no header (polars names them '' and '_duplicated_N'): Excel saves a
    trailing tab after a column it once held, and a trial (BI) saw it carried as a nameless column into the report
    and the GNPS metadata export. Raises InputError naming the file and the column's position when such a column
    holds a value: its header is missing, not the column; or when a header is written twice (polars renames the
    second 'age' 'age_duplicated_0', and the first would be read alone)."""
    for c in sheet.columns:
        twice = re.fullmatch(r"(.+)_duplicated_\d+", c)
        if twice and twice.group(1) in sheet.columns:
            raise InputError(f"the header {twice.group(1)!r} is written twice (columns "
                             f"{sheet.columns.index(twice.group(1)) + 1} and {sheet.columns.index(c) + 1})",
                             file=str(path), fix="give each column its own name, or delete the repeated column")
    nameless = [c for c in sheet.columns if not c or re.fullmatch(r"_duplicated_\d+", c)]
    for c in nameless:
        values = sheet[c].drop_nulls().str.strip_chars()
        if (values != "").any():
            raise InputError(f"column {sheet.columns.index(c) + 1} has no header but holds values (first: "
                             f"{values.filter(values != '')[0]!r})", file=str(path),
                             fix="write its name in the header line, or delete the column")
    return sheet.drop(nameless)


def _refuse_lookalike_headers(sheet: pl.DataFrame, path: Path) -> None:
    """Raise InputError naming the file when a header is one of ``READ_COLUMNS`` written with other letter case,
    spaces or hyphens ("Sample Type", "Injection-Order", "Batch") and the column itself is absent."""
    found = [(c, norm) for c in sheet.columns
             if (norm := re.sub(r"[\s\-]+", "_", c.strip().lower())) in READ_COLUMNS and c != norm
             and norm not in sheet.columns]
    if found:
        # what goes wrong otherwise, for the columns found (trial AB: the QC wording beside 'sample id' and 'File')
        cost = {"sample_type": "pooled QCs and blanks are taken as samples", "batch": "the batches are not used",
                "injection_order": "the run order is not used", "subject_id": "runs of one subject are not paired"}
        costs = [cost[n] for _, n in found if n in cost]
        raise InputError("column(s) " + ", ".join(f"'{c}' (read as '{n}' only when named so)" for c, n in found)
                         + " of the sample sheet are not read under these names", file=str(path),
                         fix="rename the header(s) to " + ", ".join(n for _, n in found) + " exactly (lower case, "
                             "underscores)" + (": otherwise " + ", ".join(costs) if costs else ""))


def _utf8(path: Path) -> bytes:
    """The sheet's bytes as UTF-8: as they are when they decode so, else read as Windows-1252 (what Excel's "Text
    (Tab delimited)" writes on Windows; a trial's sheet was refused as "not tab-separated"), with a warning. Raises
    InputError naming the file when neither decodes."""
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":  # a zip: an Excel workbook (.xlsx) named as the sheet (trial W)
        raise InputError("the sheet is an Excel workbook (.xlsx), not text", file=str(path),
                         fix="in Excel, save it as 'Text (Tab delimited)' or 'UTF-8 (Comma delimited)' and name "
                             "that file in config.yaml's samples (a .tsv is read as tab-separated)")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # Excel's "Unicode Text": UTF-16 with a byte-order mark
        data = data.decode("utf-16").encode("utf-8")
    if b"\r" in data and b"\n" not in data:  # classic Mac line endings (Excel for Mac's CSV): one line, unsaid
        data = data.replace(b"\r", b"\n")
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError as err:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise InputError(f"the sheet is neither UTF-8 nor Windows-1252 text ({err})", file=str(path),
                             fix="save the sheet as UTF-8 tab-separated text") from err
    log.warning("%s is not UTF-8: read as Windows-1252 (Excel's 'Text (Tab delimited)'); save it as UTF-8 to be sure "
                "of its accented characters", path)
    return text.encode("utf-8")


def on_disk(folder: Path, name: str) -> Path:
    """``folder / name``, or the file beside it whose name is the same once both are Unicode-normalised (NFC): macOS
    stores accented names decomposed, a sheet typed on another system has them composed, and the two print alike (a
    trial was told 'Contrôle 02.mzML' does not exist); each folder of the path too (trial W: 'Études/run.mzML').
    The path as given when none matches."""
    path = Path(folder) / name
    if path.exists():
        return path
    current = Path(folder)
    for part in Path(name).parts:
        step = current / part
        if not step.exists() and current.is_dir():
            wanted = unicodedata.normalize("NFC", part)
            step = next((e for e in current.iterdir() if unicodedata.normalize("NFC", e.name) == wanted), step)
        current = step
    return current if current.exists() else path


RUN_FORMATS = (".mzml", ".mzxml")  # the run files a sample sheet may name, each also gzip-compressed (.mzML.gz)


def run_format(name: str | os.PathLike) -> str | None:
    """The format of a run file by its name: ``".mzml"`` or ``".mzxml"`` (letter case ignored; also gzip-compressed,
    ``S1.mzML.gz``, as ``msconvert --gzip`` writes it), None for any other name."""
    lower = Path(name).name.lower().removesuffix(".gz")
    return next((suffix for suffix in RUN_FORMATS if lower.endswith(suffix)), None)


def run_stem(name: str | os.PathLike) -> str:
    """A run file's name without its format's extension: ``S1.mzML.gz`` and ``S1.mzML`` give ``S1``."""
    name = Path(name).name
    fmt = run_format(name)
    if fmt is None:
        return Path(name).stem
    bare = name[:-3] if name.lower().endswith(".gz") else name
    return bare[:-len(fmt)]


def unlisted_runs(folder: Path, files: Sequence[str]) -> list[str]:
    """A warning (empty list: none) naming the run files (``run_format``: mzML / mzXML, also .gz) in ``folder`` (not
    its subfolders' ``results``) that no sheet row's ``files`` names: they are not processed (a trial's extra run was
    mentioned nowhere)."""
    folder = Path(folder)
    listed = {unicodedata.normalize("NFC", str((folder / f).resolve())) for f in files}
    extra = []
    for root, dirs, names in os.walk(folder):
        # the pipeline's own folders (results/, .snakemake/) are not walked: a large study holds thousands of files
        dirs[:] = [d for d in dirs if d != "results" and not d.startswith(".")]
        for name in names:
            path = Path(root) / name
            if (run_format(name) and not name.startswith(".")
                    and unicodedata.normalize("NFC", str(path.resolve())) not in listed):
                extra.append(str(path.relative_to(folder)))
    extra.sort()
    if not extra:
        return []
    return [f"{len(extra)} mzML/mzXML file(s) in the study folder are not in the sample sheet and are not processed: "
            + ", ".join(extra[:8]) + (" ..." if len(extra) > 8 else "") + " (add a row for each to include it)"]


def _refuse_other_separators(sheet: pl.DataFrame, path: Path) -> None:
    """InputError when a sheet read as tab-separated was written with spaces, commas or semicolons instead: one
    column whose name holds the others, or rows whose first cell holds the whole line and the rest are empty."""
    first = sheet.columns[0] if sheet.columns else ""
    separator = next((name for sep, name in ((",", "commas"), (";", "semicolons"), (" ", "spaces")) if sep in first),
                     None)
    if sheet.width == 1 and separator:
        raise InputError(f"the sheet has one column named '{first}': it looks separated by {separator}, not tabs",
                         file=str(path), fix="separate the columns with tab characters (save as .tsv)")
    if sheet.width > 1 and sheet.height:
        rest_empty = sheet.select(pl.all().exclude(first).is_null().all()).row(0)
        cells = sheet[first].drop_nulls()
        if all(rest_empty) and cells.len() and cells.str.contains(r"[ ,;]\S").all():
            raise InputError("every row holds a single cell with spaces, commas or semicolons in it: the rows look "
                             "separated by something other than tabs", file=str(path),
                             fix="separate the columns of every row with tab characters, like the header")


# Headers labs write for the two columns every sheet needs (trial W: "Sample Name" got no hint); compared without
# letter case, spaces, hyphens and underscores.
_MEANT = {"sample_id": ("samplename", "sample", "sampleid", "name", "id", "samplecode"),
          "file": ("filename", "path", "filepath", "rawfile", "datafile", "mzml", "run", "runfile")}


def check_columns(sheet: pl.DataFrame, required: Sequence[str], source: str) -> None:
    """Raise InputError naming ``source`` and the first column of ``required`` that ``sheet`` lacks, with the
    header that most likely means it ("Sample Name" for sample_id, "File Name" for file) when there is one."""
    for column in required:
        if column not in sheet.columns:
            # every needed column's likely header at once (trial AB: 'File Name' came as a second error)
            meant = [(c, need) for need in required if need not in sheet.columns for c in sheet.columns
                     if re.sub(r"[\s_\-]+", "", c.lower()) in _MEANT.get(need, ())]
            raise InputError(
                f"missing column '{column}' (columns found: {', '.join(sheet.columns)})"
                + "".join(f"; is '{c}' the {need} column? then name it {need}" for c, need in meant),
                file=source,
                fix=f"the sample sheet is tab-separated with at least the columns {' and '.join(required)}",
            )


SAMPLE_TYPES = ("sample", "qc", "blank")

# The sheet columns that describe the acquisition, not the biology: never outcomes or covariates.
ACQUISITION_COLUMNS = ("sample_type", "injection_order", "batch")


def sample_roles(sheet: pl.DataFrame, source: str = "samples.tsv") -> pl.DataFrame:
    """Each sample's role in the acquisition: ``sample_id``, ``sample_type``, ``injection_order``, ``batch``.

    ``sheet`` is a sample sheet as ``read_sample_sheet`` returns it (text cells). Optional sheet columns:
    ``sample_type`` (sample | qc | blank, case-insensitive; empty or absent: sample), ``injection_order`` (an
    integer >= 1, unique across the study; absent: null; empty in some rows only: refused) and ``batch`` (any
    text; empty or absent: "1"). Returns one row per sheet row, in sheet order, with dtypes Utf8, Utf8, Int64, Utf8.
    Raises ``InputError`` naming ``source``, the row's sample and the fix for an unknown type, a non-integer,
    repeated or partly missing injection order.
    """
    n = sheet.height
    ids = sheet["sample_id"].to_list()

    def column(name: str) -> list[str | None]:
        if name not in sheet.columns:
            return [None] * n
        return [None if v is None or not str(v).strip() else str(v).strip() for v in sheet[name].to_list()]

    types = []
    for sid, value in zip(ids, column("sample_type"), strict=True):
        kind = (value or "sample").lower()
        if kind not in SAMPLE_TYPES:
            raise InputError(f"sample '{sid}': sample_type '{value}' is not one of {', '.join(SAMPLE_TYPES)}",
                             file=source, fix="write sample, qc or blank (or leave the cell empty for sample)")
        types.append(kind)
    orders: list[int | None] = []
    seen: dict[int, str] = {}
    for sid, value in zip(ids, column("injection_order"), strict=True):
        if value is None:
            orders.append(None)
            continue
        order = int(value) if value.isdigit() else 0
        if order < 1:
            raise InputError(f"sample '{sid}': injection_order '{value}' is not a whole number of at least 1",
                             file=source, fix="number the injections 1, 2, 3, ... in the order they were run")
        if order in seen:
            raise InputError(f"samples '{seen[order]}' and '{sid}' share injection_order {order}", file=source,
                             fix="give every injection its own position in the run order, counted across the "
                                 "whole study (not restarted in each batch)")
        seen[order] = sid
        orders.append(order)
    given = [sid for sid, o in zip(ids, orders, strict=True) if o is not None]
    if given and len(given) < n:
        empty = [sid for sid, o in zip(ids, orders, strict=True) if o is None]
        raise InputError(f"injection_order is empty for {len(empty)} run(s) but given for the others "
                         f"({', '.join(repr(s) for s in empty[:10])})", file=source,
                         fix="give every run its position in the run order (drift correction needs all of them), "
                             "or leave the whole column out")
    batches = [value or "1" for value in column("batch")]
    return pl.DataFrame({"sample_id": ids, "sample_type": types, "injection_order": orders, "batch": batches},
                        schema={"sample_id": pl.Utf8, "sample_type": pl.Utf8, "injection_order": pl.Int64,
                                "batch": pl.Utf8})


def typed_rows_with_outcomes(sheet: pl.DataFrame, columns: list[str], source: str = "samples.tsv") -> list[str]:
    """One warning naming the pooled-QC and blank rows of ``sheet`` that carry a value in any outcome column of
    ``columns``: such runs never enter the models or the tests, so the value is either ignored or marks a study
    sample typed wrongly. A study sample typed blank is worse than left out: the blank filter then finds most
    features as abundant in the "blank" as in the samples and leaves them out (a trial: 257 of 270 features gone,
    after a warning that only said the value was ignored). Empty when there is none."""
    if "sample_type" not in sheet.columns:
        return []
    roles = sample_roles(sheet, source)
    typed = roles["sample_type"].is_in(["qc", "blank"])
    present = [c for c in dict.fromkeys(columns) if c in sheet.columns]
    if not present:
        return []
    filled = pl.any_horizontal([sheet[c].cast(pl.Utf8).str.strip_chars().fill_null("") != "" for c in present])
    rows = roles.filter(typed & filled)
    if not rows.height:
        return []
    named = ", ".join(f"{r['sample_id']} ({r['sample_type']})" for r in rows.head(10).iter_rows(named=True))
    blanks = (" A study sample typed 'blank' also becomes a blank of the blank filter, which then leaves out every "
              "feature about as abundant in it as in the samples: most of them." if
              (rows["sample_type"] == "blank").any() else "")
    return [(f"{source}: {rows.height} QC or blank row(s) have outcome values ({', '.join(present)}): {named}"
            f"{', ...' if rows.height > 10 else ''}. QC and blank runs never enter the models or the tests, so the "
            f"values are ignored; if a row is a study sample, set its sample_type to 'sample'.{blanks}")]


def tidy_sheet(sheet: pl.DataFrame) -> pl.DataFrame:
    """``sheet`` with ``sample_id`` and ``file`` stripped of surrounding spaces and ``sample_type`` (when present)
    stripped and lower-cased, as ``sample_roles`` reads it, so that the validated sheet the study stages read
    (results/study/samples.tsv) does not change with an edit that changes nothing: a trial's "QC " for "qc" reran
    every study job."""
    tidy = [pl.col("sample_id").str.strip_chars(), pl.col("file").str.strip_chars()]
    if "sample_type" in sheet.columns:
        tidy.append(pl.col("sample_type").cast(pl.Utf8).str.strip_chars().str.to_lowercase())
    return sheet.with_columns(tidy)


def study_sheet(sheet: pl.DataFrame, config: dict) -> pl.DataFrame:
    """The sheet the study stages read (results/study/samples.tsv): ``sheet`` with the outcome and covariate cells of
    its pooled-QC and blank rows emptied. No stage reads them (``typed_rows_with_outcomes`` warns about them at the
    start of a run), so a value there must not make the sheet differ: a trial's edit of a QC row's outcome rescheduled
    every study job. ``config``: the study's configuration (models.outcomes, models.covariates)."""
    models = config.get("models") or {}
    columns = [o.get("column") for o in (models.get("outcomes") or []) if isinstance(o, dict)]
    columns += list(models.get("covariates") or [])
    present = [c for c in dict.fromkeys(str(c) for c in columns if c) if c in sheet.columns]
    if "sample_type" not in sheet.columns or not present:
        return sheet
    typed = sample_roles(sheet)["sample_type"].is_in(["qc", "blank"])
    return sheet.with_columns([pl.when(typed).then(None).otherwise(pl.col(c)).alias(c) for c in present])


def run_sheet(sheet: pl.DataFrame) -> pl.DataFrame:
    """The sheet of the run-level study stages (results/study/runs.tsv; correct, identify, qc): ``sheet``'s
    ``READ_COLUMNS`` (sample_id, file, the acquisition columns, the subject) that it has, in
    that order, one row per run. Outcome and covariate columns are left out, so an edit of them reruns only the
    stages that read them (differential, models and what follows), not the correction, the identifications or the
    run QC (an HPC admin's trial: a relabelled sample reran every study job)."""
    return sheet.select([c for c in READ_COLUMNS if c in sheet.columns])


# ids that labs give pooled QCs and blanks ("QC_pool_01", "Blank_2", "solvent"): word-like parts, not inside a word
_ROLE_WORDS = re.compile(r"(?:^|[_\-\s.])(qc|pool(?:ed)?|blank|solvent|wash)(?:$|[_\-\s.\d])", re.IGNORECASE)


def role_name_warnings(sheet: pl.DataFrame, source: str = "samples.tsv") -> list[str]:
    """One warning naming the study samples (sample_type empty or absent; "sample" written is believed) whose ids read
    like a pooled QC or a blank ("QC_pool_01", "Blank", "solvent"): a sheet without a sample_type column, or with an
    empty cell there, takes them as study samples, and a QC in the tests is a sample of no class (trial W); [] when
    none."""
    types = (sheet["sample_type"].to_list() if "sample_type" in sheet.columns else [None] * sheet.height)
    named = [sid for sid, t in zip(sheet["sample_id"].to_list(), types)
             if (t is None or not str(t).strip()) and _ROLE_WORDS.search(str(sid))]
    if not named:
        return []
    return [(f"{len(named)} run(s) of {source} are study samples by their sample_type (empty or absent) but are named "
            f"like pooled QCs or blanks: {', '.join(named[:10])}{' ...' if len(named) > 10 else ''}; if they are, "
            "write qc or blank in a sample_type column, else they are tested and modelled as samples")]


# How dates are typed in a batch column: ISO (2024-03-01), day or month first with / . or - (01/03/2024), compact
# (20240301). One batch typed two ways is two batches to the correction (trial W).
_DATE_FORMS = {"year-month-day": re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"),
               "day/month/year or month/day/year": re.compile(r"\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"),
               "yyyymmdd": re.compile(r"(?:19|20)\d{6}")}


def batch_label_warnings(sheet: pl.DataFrame, source: str = "samples.tsv") -> list[str]:
    """One warning when the ``batch`` column labels batches with dates typed in more than one form (2024-03-01 and
    01/03/2024): the correction takes every distinct label as its own batch, so one day typed two ways splits its
    runs in two (trial W); [] otherwise."""
    if "batch" not in sheet.columns:
        return []
    labels = sorted({str(v).strip() for v in sheet["batch"].to_list() if v is not None and str(v).strip()})
    forms: dict[str, list[str]] = {}
    for label in labels:
        form = next((name for name, pattern in _DATE_FORMS.items() if pattern.fullmatch(label)), None)
        if form:
            forms.setdefault(form, []).append(label)
    # one day written with and without leading zeros (trial AB: 2024-3-1 beside 2024-03-01), or compact
    days: dict[tuple[int, int, int], list[str]] = {}
    for label in forms.get("year-month-day", []) + forms.get("yyyymmdd", []):
        parts = re.split(r"[-/.]", label) if not label.isdigit() else [label[:4], label[4:6], label[6:]]
        days.setdefault(tuple(int(p) for p in parts), []).append(label)
    twice = [labels for labels in days.values() if len(labels) > 1]
    if len(forms) < 2 and not twice:
        return []
    shown = "; ".join(f"{form}: {', '.join(values[:3])}" for form, values in forms.items())
    same = "; " + ", ".join(" and ".join(labels) for labels in twice[:3]) + " name one day" if twice else ""
    return [(f"the batch column of {source} holds dates typed in {len(forms)} form(s) ({shown}{same}): each distinct "
            "label is its own batch, so a day typed two ways makes two batches; write every batch the same way")]
