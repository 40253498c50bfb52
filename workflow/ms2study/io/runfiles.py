"""Checks on a study's run files as a whole (the sheet's ``file`` column): the same run under two sample ids; runs
that hold no MS/MS (``ms1_only_warnings``, from the file's header or first scans); and on one run file's first and
last bytes, without parsing it (``content_problem``: empty, not XML, misnamed, truncated), which the pre-run check
and the readers share.

Imports ``core`` and ``io.samplesheet``.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import os
import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ms2study.core.errors import InputError
from ms2study.io.samplesheet import RUN_FORMATS, on_disk, run_format, run_stem

CHUNK = 1 << 20  # bytes read at a time when hashing
GZIP_MAGIC = b"\x1f\x8b"
FORMAT_NAMES = {".mzml": "mzML", ".mzxml": "mzXML"}


_CLOSING_TAGS = {".mzml": (b"</mzML>", b"</indexedmzML>"), ".mzxml": (b"</mzXML>",)}


def content_problem(path: Path) -> tuple[str, str] | None:
    """(what is wrong, fix) when a glance at the file's first and last bytes shows it cannot be the run its name
    says: empty, not XML, mzML named .mzXML (or the reverse), or cut short before its closing tag. None otherwise.
    Reads 8 KB: the pre-run check of ``study.load_sample_sheet`` runs it on every run of the sheet, and the readers
    (``msio.load_experiment``) before parsing. A gzip-compressed run (``S1.mzML.gz``, or gzip content under a
    .mzML name, which pyOpenMS decompresses too) has its first 4 KB decompressed and checked as above, but not its
    end: a compressed file's end is known only by decompressing all of it, so a truncated one is found when its
    detect job reads it (an error naming the file and sample; the other samples go on)."""
    size = path.stat().st_size
    if size == 0:
        return ("the file is empty (0 bytes)",
                "copy or convert the run again (an interrupted transfer or conversion leaves an empty file)")
    with open(path, "rb") as handle:
        head = handle.read(4096)
        handle.seek(max(0, size - 4096))
        tail = handle.read()
    if head[:2] == GZIP_MAGIC:
        try:
            with gzip.open(path, "rb") as stream:
                head, tail = stream.read(4096), None
        except (OSError, EOFError, zlib.error) as err:
            return (f"the file is gzip-compressed but cannot be decompressed ({err})",
                    "copy the run again, or decompress it (gunzip) to see what is wrong")
    elif path.name.lower().endswith(".gz"):
        return ("the file is named .gz but is not gzip-compressed",
                f"rename it to {Path(path.name).stem} (without .gz) and change the sample sheet's file column")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.startswith(b"<"):
        return ("the file is not XML, so it is neither mzML nor mzXML",
                ("convert the vendor file to mzML with msconvert (ProteoWizard) and point the sample sheet (or "
                 "--background) at the .mzML"))
    suffix = run_format(path) or path.suffix.lower()
    holds = ".mzml" if (b"<mzML" in head or b"<indexedmzML" in head) else ".mzxml" if b"<mzXML" in head else None
    if holds and holds != suffix:
        name = FORMAT_NAMES[holds]
        gz = ".gz" if path.name.lower().endswith(".gz") else ""
        return (f"the file holds {name} but is named {path.name[len(run_stem(path)):]}",
                f"rename it to {run_stem(path)}.{name}{gz} (and change the sample sheet's file column)")
    if holds is None and suffix in _CLOSING_TAGS:  # XML, but no run in its first 4 KB (a saved web page, a report)
        return ("the file is XML or HTML but holds no <mzML> or <mzXML> element at its start",
                "it is not a run (a saved web page or error message?): copy or convert the run again")
    if holds and tail is not None and not any(tag in tail for tag in _CLOSING_TAGS[holds]):
        return ("the file ends before its closing tag: it is truncated (an interrupted copy or conversion)",
                "copy or convert the run again from the vendor raw file")
    return None


def content_size_bytes(path: str | Path) -> int:
    """The bytes a file holds once read: its size, or for a gzip-compressed run (``S1.mzML.gz``) the decompressed
    size its last 4 bytes state (ISIZE, the size modulo 2**32, RFC 1952), raised by 2**32 until it is no smaller
    than the compressed file (a run of more than 4 GiB). Job resources that grow with a run's size use it: a
    compressed mzML is a third to a tenth of what the reader holds."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        if size < 18 or handle.read(2) != GZIP_MAGIC:
            return size
        handle.seek(size - 4)
        content = int.from_bytes(handle.read(4), "little")
    while content < size:
        content += 1 << 32
    return content


def is_gzip(path: str | Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes (whatever its name)."""
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def gzip_truncated(path: Path) -> tuple[str, str] | None:
    """(what is wrong, fix) when ``path`` is gzip-compressed and its stream ends before its end-of-stream marker or
    is damaged (an interrupted copy), else None. Decompresses the whole file, so the readers call it only once
    parsing failed: ``content_problem`` cannot see a compressed file's end from its last bytes."""
    if not is_gzip(path):
        return None
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except EOFError:
        return ("the compressed file ends before its end: it is truncated (an interrupted copy or conversion)",
                "copy the run again (or convert it again with msconvert --gzip)")
    except (OSError, zlib.error) as err:
        return (f"the compressed file is damaged ({err})", "copy the run again")
    return None


def checked_run_file(study_dir: Path, file: str, row_number: int, sample_id: str, source: str) -> Path:
    """The run file of one sample-sheet row (``file`` relative to ``study_dir``, found as stored on disk:
    ``samplesheet.on_disk``), checked before any job: it exists, is .mzML or .mzXML, also gzip-compressed
    (``S1.mzML.gz``; another compression is named so), and its first and last bytes show no ``content_problem``
    (a trial's truncated run passed the pre-run check and failed only at its detect job). Raises InputError naming
    the row, the sample and the sheet (``source``)."""
    path = on_disk(study_dir, file)  # the name as stored (macOS writes accents decomposed)
    if not path.exists():
        hint = near_match(Path(study_dir), file)
        raise InputError(f"row {row_number}: file '{file}' does not exist (looked for {path})"
                         + (f"; did you mean '{hint}'?" if hint else ""),
                         file=source, sample=sample_id, fix="correct the path (relative to the study folder)")
    if run_format(path) is None:
        compressed = path.suffix.lower() in (".bz2", ".zip", ".xz") and (
            Path(path.stem).suffix.lower() in RUN_FORMATS)
        raise InputError(f"row {row_number}: file '{file}' is not .mzML or .mzXML (or .mzML.gz)"
                         + (f" (it is {path.suffix[1:]}-compressed)" if compressed else ""), file=source,
                         sample=sample_id,
                         fix=(f"decompress it (unzip / bunzip2 / unxz '{file}') and write the .mzML or .mzXML "
                              "name in the sheet (gzip, .mzML.gz, is read as it is)" if compressed
                              else "convert the vendor file with msconvert (ProteoWizard) to mzML"))
    problem = content_problem(path)
    if problem:  # trial AV: the fix did not offer what the README's troubleshooting table does
        raise InputError(f"row {row_number}: '{file}': {problem[0]}", file=source, sample=sample_id,
                         fix=f"{problem[1]}, or remove the row to run the study without this sample")
    return path


def near_match(study_dir: Path, file: str) -> str | None:
    """The run file that a sheet's missing ``file`` most likely means (trial W: a sheet with Windows paths or other
    letter case got no hint): the path with ``\\`` read as ``/``, else a file of the same folder whose name differs
    only in letter case, else the closest name there (``difflib``, ratio 0.8 or more); relative to ``study_dir``."""
    forward = file.replace("\\", "/")
    if forward != file and on_disk(study_dir, forward).exists():
        return forward
    wanted = Path(forward)
    folder = on_disk(study_dir, str(wanted.parent)) if str(wanted.parent) != "." else Path(study_dir)
    if not folder.is_dir() and folder.parent.is_dir():  # the folder in other letter case (trial AB: MZML/S07.mzML)
        folder = next((p for p in folder.parent.iterdir() if p.is_dir() and p.name.lower() == folder.name.lower()),
                      folder)
    if not folder.is_dir():
        return None
    names = [p.name for p in folder.iterdir() if run_format(p)]
    same = [n for n in names if n.lower() == wanted.name.lower()]
    close = same or difflib.get_close_matches(wanted.name, names, n=1, cutoff=0.8)
    if not close:
        return None
    found = folder / close[0]
    return str(found.relative_to(study_dir)) if found.is_relative_to(study_dir) else str(found)  # an absolute path


def checked_run_files(study_dir: Path, sheet, source: str) -> dict[str, str]:
    """``checked_run_file`` for every row of ``sheet`` (polars DataFrame with sample_id and file; row numbers count
    the header as line 1): {file as written: path as stored, relative to ``study_dir`` (absolute for a file given
    by an absolute path outside it)}. All problems are raised as
    one InputError, each on its own row (trial W met them one run at a time)."""
    found, problems = {}, []
    for row_number, (sample_id, file) in enumerate(zip(sheet["sample_id"].to_list(), sheet["file"].to_list()), 2):
        try:
            path = checked_run_file(study_dir, file, row_number, sample_id, source)
            # an absolute path outside the study folder stays absolute (trial AE: a traceback)
            found[file] = str(path.relative_to(study_dir)) if path.is_relative_to(study_dir) else str(path)
        except InputError as err:
            problems.append(err)
    if len(problems) > 1:
        raise InputError(f"{len(problems)} run files have problems: " + "; ".join(
            f"({i}) {err.message} (sample '{err.sample}'; {err.fix})" for i, err in enumerate(problems, 1)),
                         file=source, fix="correct each of them, then run again")
    if problems:
        raise problems[0]
    return found


def identical_runs(study_dir: Path, sample_ids: Sequence[str], files: Sequence[str]) -> list[list[str]]:
    """Groups of sample ids whose run files hold the same bytes (the same file named twice, or a copy under a new
    name): two injections never give identical files, so this is a bookkeeping mistake, and every result that counts
    samples (tests, models, enrichment) counts that run twice (a fresh user's trial: two copied runs took the
    differential hits from 4 to 11). ``files`` are relative to ``study_dir`` (or absolute), one per sample id;
    missing files are skipped (another check names them). Only files of equal size are hashed (SHA-256, streamed),
    so a study of distinct runs reads no file. Returns the groups, each in sheet order, ordered by their first id."""
    by_size: dict[int, list[tuple[str, Path]]] = defaultdict(list)
    for sample_id, name in zip(sample_ids, files):
        path = Path(name) if Path(name).is_absolute() else Path(study_dir) / name
        if path.is_file():
            by_size[path.stat().st_size].append((sample_id, path))
    groups: list[list[str]] = []
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        by_digest: dict[str, list[str]] = defaultdict(list)
        digests: dict[Path, str] = {}
        for sample_id, path in same_size:
            key = path.resolve()
            if key not in digests:
                digests[key] = _sha256(key)
            by_digest[digests[key]].append(sample_id)
        groups.extend(ids for ids in by_digest.values() if len(ids) > 1)
    order = {s: i for i, s in enumerate(sample_ids)}
    return sorted(groups, key=lambda ids: order[ids[0]])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def identical_run_warnings(study_dir: Path, sheet, columns: Sequence[str] = ()) -> list[str]:
    """A warning per group of sample ids whose run files are byte-identical (``identical_runs``); ``sheet``: the
    sample sheet (polars DataFrame with sample_id and file). Raises InputError when such a group's samples differ
    in one of ``columns`` (the outcomes and covariates the study models): one injection cannot be both a case and a
    control (trial W: that was only a warning, and the run was tested on both sides)."""
    groups = identical_runs(study_dir, sheet["sample_id"].to_list(), sheet["file"].to_list())
    path_of = {sid: (Path(study_dir) / f).resolve() for sid, f in zip(sheet["sample_id"].to_list(),
                                                                      sheet["file"].to_list())}
    warnings = []
    for ids in groups:
        rows = sheet.filter(sheet["sample_id"].is_in(ids))
        for column in (c for c in columns if c in sheet.columns):
            values = dict(zip(rows["sample_id"].to_list(), rows[column].to_list()))
            if len({str(v) for v in values.values()}) > 1:
                shown = ", ".join(f"{sid}: {values[sid]!r}" for sid in ids)
                raise InputError(f"samples {', '.join(ids)} are one injection (their run files hold the same bytes) "
                                 f"but differ in '{column}' ({shown})", file=str(path_of[ids[0]]), sample=ids[0],
                                 fix="give each sample its own run file, or remove the wrong rows from the sample sheet")
        # a trial: one file listed twice was called "a copied or twice-listed file?"; the sheet says which
        same = len({path_of[i] for i in ids}) == 1
        what = f"name the same file ({path_of[ids[0]].name})" if same else "have byte-identical run files"
        warnings.append(f"samples {', '.join(ids)} {what}: one injection counted {len(ids)} times"
                        + ("" if same else " (a copied file?)")
                        + "; remove the extra rows from the sample sheet unless that is meant")
    return warnings


MS_LEVEL_BYTES = 2 << 20   # bytes of a run's start (and middle) read for its scans' MS levels (Q Exactive: ~60 MS1)
MS1_ONLY_MIN_SCANS = 20    # MS1 scans without one MS/MS scan among them that make a run MS1-only
_LEVEL_RE = re.compile(rb'(?:accession="MS:1000511"[^>]*?value="(\d+)"|msLevel="(\d+)")')


def ms_levels_sampled(path: Path) -> tuple[int, int, bool]:
    """(MS1 scans, MS/MS scans, whether the header lists MSn spectra) among the first ``MS_LEVEL_BYTES`` of an
    mzML (cvParam "ms level", MS:1000511; the fileContent term "MSn spectrum", MS:1000580) or mzXML (``msLevel``)
    file and as many from its middle and its end when the start has no MS/MS (a run whose first minute is diverted
    to waste has MS/MS scans only there: trials R, V; a file up to 3 x ``MS_LEVEL_BYTES`` is read whole), without
    parsing it. A gzip-compressed run cannot be read from its middle: its decompressed start, and when that holds
    no MS/MS, all of it (``_gzip_levels``). Raises OSError for a file that cannot be read."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(MS_LEVEL_BYTES)
        if head[:2] == GZIP_MAGIC:
            return _gzip_levels(path)
        content = head.split(b"</fileContent>", 1)[0] if b"</fileContent>" in head else b""
        levels = [int(a or b) for a, b in _LEVEL_RE.findall(head)]
        # the middle and the end too (trial V: MS2 only in a run's last third), read only when the start has no MS/MS
        # (a DDA run's first 2 MB nearly always do: 1,000 runs then cost 2 GB of reading, not 6), whatever the header
        # says (trial V: msconvert's msLevel filter drops the MS2 scans but keeps the source's fileContent)
        if size > MS_LEVEL_BYTES and not any(v > 1 for v in levels):
            if size <= 3 * MS_LEVEL_BYTES:  # a small file: the rest of it, whole
                blocks = [(MS_LEVEL_BYTES, size)]
            else:
                end = max(size - MS_LEVEL_BYTES - (16 << 10), size // 2 + MS_LEVEL_BYTES)
                blocks = [(size // 2, MS_LEVEL_BYTES), (end, MS_LEVEL_BYTES)]
            for start, length in blocks:
                handle.seek(start)
                levels += [int(a or b) for a, b in _LEVEL_RE.findall(handle.read(length))]
    return sum(v == 1 for v in levels), sum(v > 1 for v in levels), b"MS:1000580" in content


def _gzip_levels(path: Path) -> tuple[int, int, bool]:
    """``ms_levels_sampled`` of a gzip-compressed run: its first ``MS_LEVEL_BYTES`` decompressed, then the rest in
    blocks of that size until an MS/MS scan is found or the file ends (an MS1-only run is read whole). A block is
    cut after its last line end and the rest carried into the next, so no ms-level term is split. A damaged
    stream stops the reading; what was read counts (the detect job names the damage)."""
    levels, content, carry = [], b"", b""
    try:
        with gzip.open(path, "rb") as stream:
            while True:
                block = stream.read(MS_LEVEL_BYTES)
                text = carry + block
                cut = text.rfind(b"\n") + 1 if block else len(text)
                text, carry = text[:cut], text[cut:]
                if not content and b"</fileContent>" in text:
                    content = text.split(b"</fileContent>", 1)[0]
                levels += [int(a or b) for a, b in _LEVEL_RE.findall(text)]
                if not block or any(v > 1 for v in levels):
                    break
    except (EOFError, zlib.error, gzip.BadGzipFile):
        pass
    return sum(v == 1 for v in levels), sum(v > 1 for v in levels), b"MS:1000580" in content


def ms1_only_warnings(study_dir: Path, sheet) -> list[str]:
    """A warning per run of the sheet (polars DataFrame with sample_id and file) whose start, middle and end
    (``ms_levels_sampled``; the whole of a file up to 3 x ``MS_LEVEL_BYTES``) hold ``MS1_ONLY_MIN_SCANS`` or more MS1
    scans and no MS/MS scan, whatever its header lists:
    an MS1-only (or converted without its MS2) run gets features, but no identification or spectrum embedding,
    which before was said only after the whole run (QC table). Files that are missing or unreadable are left to
    the pre-run check (``checked_run_file``)."""
    warnings = []
    for sample_id, file in zip(sheet["sample_id"].to_list(), sheet["file"].to_list()):
        path = on_disk(Path(study_dir), file)
        try:
            ms1, msn, listed = ms_levels_sampled(path)
        except OSError:
            continue
        if msn or ms1 < MS1_ONLY_MIN_SCANS:
            continue
        # a gzip-compressed run without MS/MS was read whole
        whole = path.stat().st_size <= 3 * MS_LEVEL_BYTES or is_gzip(path)
        where = "in the whole file" if whole else f"among {ms1} scans read at its start, middle and end"
        # a header listing MSn spectra is said but not believed: msconvert's msLevel filter keeps the source's
        header = " although its header lists MS/MS spectra" if listed else ""
        warnings.append(f"sample {sample_id} ({file}): no MS/MS scan {where}{header} ({ms1} MS1 scans): its "
                        "features are measured but get no identification or spectrum embedding; if it is a DDA run, "
                        "convert it again keeping its MS2 scans (msconvert without an msLevel filter)")
    return warnings
