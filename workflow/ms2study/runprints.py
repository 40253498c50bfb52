"""Run-file fingerprints: a run replaced under the same name is processed again even when its file is older than
its results.

Snakemake reruns a job when an input is newer than its outputs; its content check covers only small files, and a
run is far larger. A run copied in with its old modification time kept (``rsync -a``, ``cp -p``, an unpacked archive,
a restore from backup) therefore left the previous run's features, names and tests in place, with "Nothing to be
done" (trial AA). ``ms2study run`` keeps, per sample, a fingerprint of the run file its detect job last read
(``FINGERPRINTS``: the file's size and the SHA-256 of its first and last MiB, which hold the run's header, its
start time and its index) and, before each run, forces the detect job of every sample whose file no longer matches
while its features table is newer than the file (a newer file Snakemake reruns by itself); the jobs after detect
follow. A run newer than its results whose fingerprint is the recorded one (touched, copied without its times) gets
its modification time set back to before them (``set_back_touched``), so it is not processed again. Also the note
in the folder of a sample the sheet no longer lists (``orphan_sample_notes``). Used by
``ms2study.runner``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ms2study.core.atomic import write_text
from ms2study.io.samplesheet import on_disk

FINGERPRINTS = Path("results") / ".run_fingerprints.json"
DETECT_OUTPUT = "results/samples/{sample}/features.parquet"  # rules/detect.smk; spectra and the rest follow it
END_BYTES = 1 << 20


def _named(ids: list[str], most: int = 10) -> str:
    """The first ``most`` of ``ids``, comma-separated, and how many more."""
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def fingerprint(path: Path) -> str:
    """"<size>:<SHA-256 of the first and the last ``END_BYTES``>" of a file (the whole file when it is smaller).
    Raises OSError when it cannot be read."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(END_BYTES))
        if size > END_BYTES:
            handle.seek(max(END_BYTES, size - END_BYTES))
            digest.update(handle.read())
    return f"{size}:{digest.hexdigest()}"


def _recorded(study_dir: Path) -> dict[str, str]:
    try:
        value = json.loads((Path(study_dir) / FINGERPRINTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def replaced_runs(study_dir: Path, sheet) -> tuple[list[str], dict[str, str]]:
    """(sample ids whose run file differs from the one their detect job read although the file is not newer than
    that job's features table, the current fingerprint of every readable run of the sheet). ``sheet``: polars
    DataFrame with sample_id and file (relative to ``study_dir``). Samples without a record or without outputs are
    left to Snakemake."""
    study_dir = Path(study_dir)
    recorded, current, replaced = _recorded(study_dir), {}, []
    for sample_id, file in zip(sheet["sample_id"].to_list(), sheet["file"].to_list()):
        path = on_disk(study_dir, file)
        try:
            current[sample_id] = fingerprint(path)
        except OSError:
            continue
        output = study_dir / DETECT_OUTPUT.format(sample=sample_id)
        old = recorded.get(sample_id)
        if old not in (None, current[sample_id]) and output.exists() \
                and output.stat().st_mtime >= path.stat().st_mtime:
            replaced.append(sample_id)
    return replaced, current


QC_OUTPUT = Path("results") / "study" / "qc.parquet"  # rules/qc.smk: the one study job that reads the runs (headers)


def _outputs_read_from(study_dir: Path, sample_id: str) -> list[Path]:
    """The files made from a sample's run: its per-sample outputs and the study's run QC table."""
    folder = study_dir / "results" / "samples" / sample_id
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return files + ([study_dir / QC_OUTPUT] if (study_dir / QC_OUTPUT).exists() else [])


def set_back_touched(study_dir: Path, sheet, current: dict[str, str]) -> tuple[list[str], list[str]]:
    """Runs touched but not changed: (sample ids whose run file was newer than the results made from it while its
    fingerprint is still the one recorded when they were made, and whose modification time was set back to one
    second before the oldest of those results; those whose time could not be set, e.g. a read-only data folder).

    Snakemake reruns a job whose input is newer than its outputs, whatever the input holds: ``touch``, a copy without
    ``-p``, a checkout or a download of the same file again reprocessed the sample and every study stage (trial BB,
    an HPC admin). The fingerprint (``fingerprint``: size and the first and last MiB, which hold the header with the
    run's start time, the index of every scan's byte offset and, from msconvert, a SHA-1 of the whole file; OpenMS
    writes 0 there) says the content is the one processed. ``current``: the sheet's
    fingerprints (``replaced_runs``). Samples without a record or a features table are left to Snakemake. Done on a
    dry run too, so that its job list is the run's."""
    study_dir = Path(study_dir)
    recorded, done, failed = _recorded(study_dir), [], []
    for sample_id, file in zip(sheet["sample_id"].to_list(), sheet["file"].to_list()):
        if recorded.get(sample_id) is None or recorded.get(sample_id) != current.get(sample_id) \
                or not (study_dir / DETECT_OUTPUT.format(sample=sample_id)).exists():
            continue
        path = on_disk(study_dir, file)
        try:
            oldest = min(p.stat().st_mtime for p in _outputs_read_from(study_dir, sample_id))
            stat = path.stat()
            if stat.st_mtime <= oldest:
                continue
            os.utime(path, (stat.st_atime, oldest - 1.0))
            done.append(sample_id)
        except OSError:
            failed.append(sample_id)
    return done, failed


def touched_note(done: list[str], failed: list[str]) -> list[str]:
    """The pre-run notes (none, one or two) on runs touched but not changed (``set_back_touched``)."""
    notes = []
    if done:
        notes.append(f"the run file of sample(s) {_named(done)} is newer than its results but holds what they were "
                     "made from (touched, or copied without its times?): its modification time was set back to before "
                     "its results, so it is not processed again")
    if failed:
        notes.append(f"the run file of sample(s) {_named(failed)} is newer than its results but holds what they were "
                     "made from, and its modification time could not be set back (a read-only folder?): its jobs run "
                     "again; to keep its results, give the file an older time (touch -d '2000-01-01' FILE) first")
    return notes


def with_forced(extra: list[str], samples: list[str]) -> list[str]:
    """Snakemake's options ``extra`` with the detect job of each of ``samples`` (and so every job after it) forced to
    rerun: its output added to the user's own ``--forcerun`` / ``-R`` list when there is one (a second option would
    replace it), else as a ``--forcerun`` of its own at the end."""
    if not samples:
        return list(extra)
    files = [DETECT_OUTPUT.format(sample=s) for s in samples]
    out: list[str] = []
    for arg in extra:
        out += ["--forcerun", arg.split("=", 1)[1]] if arg.startswith("--forcerun=") else [arg]
    at = next((i for i, arg in enumerate(out) if arg in ("--forcerun", "-R")), None)
    return out + ["--forcerun", *files] if at is None else out[:at + 1] + files + out[at + 1:]


def remember(study_dir: Path, current: dict[str, str], since: float) -> None:
    """Record ``current`` fingerprints (taken before the run) for the samples whose features table this run wrote
    (modified at or after ``since``, a ``time.time()``) and for those with a features table but no record yet; the
    others keep their record, so a replaced run that did not get processed is still found next time. A sample no
    longer in ``current`` (out of the sheet) keeps its record while its features table is there: its outputs are
    reused when it comes back, so the file they were made from must be known then (trial AV: a run replaced while
    its sample was out of the sheet was adopted as matching the old results when the row came back). Written
    atomically."""
    study_dir = Path(study_dir)
    recorded = _recorded(study_dir)
    kept = {s: p for s, p in recorded.items()
            if s not in current and (study_dir / DETECT_OUTPUT.format(sample=s)).exists()}
    for sample_id, print_ in current.items():
        output = study_dir / DETECT_OUTPUT.format(sample=sample_id)
        if not output.exists():
            continue
        fresh = output.stat().st_mtime >= since
        kept[sample_id] = print_ if fresh or sample_id not in recorded else recorded[sample_id]
    if kept != recorded and (study_dir / "results").is_dir():
        write_text(json.dumps(kept, sort_keys=True, indent=1), study_dir / FINGERPRINTS)


def replaced_note(samples: list[str]) -> list[str]:
    """The pre-run note (one, or none) naming the samples whose run file was replaced by one not newer than its
    results."""
    if not samples:
        return []
    return [(f"the run file of sample(s) {_named(samples)} changed since its features were detected, although the "
             "file is not newer than its results (copied with its old time kept?): their jobs run again")]


def moved_note(study_dir: Path, current: dict[str, str]) -> list[str]:
    """The pre-run notes (none, or one per kind) on runs that another sample's results were made from (``current``:
    the sheet's fingerprints, ``replaced_runs``): two samples whose files were swapped, and a sample whose run is the
    one a sample no longer in the sheet was processed from (a renamed sample id). Trial AV: both were processed again
    with no word of why. Results hold their sample's id, so neither is reused."""
    recorded = _recorded(study_dir)
    by_print: dict[str, list[str]] = {}
    for sample_id, print_ in recorded.items():
        by_print.setdefault(print_, []).append(sample_id)
    swapped, renamed = set(), []
    for sample_id, print_ in current.items():
        if recorded.get(sample_id) == print_:
            continue
        for other in by_print.get(print_, []):
            if other == sample_id:
                continue
            if other in current and current[other] == recorded.get(sample_id):
                swapped.add(tuple(sorted((sample_id, other))))
            elif other not in current:
                renamed.append(f"{sample_id} (was {other})")
    notes = []
    if swapped:
        pairs = [f"{a} and {b}" for a, b in sorted(swapped)]
        notes.append(f"the run files of {_named(pairs)} are each other's files of the last run (swapped in the sheet "
                     "or on disk?): their jobs run again")
    if renamed:
        notes.append(f"the run of {_named(renamed)} is the file the old id's results were made from (a renamed "
                     "sample?): results hold their sample's id, so it is processed again under the new one")
    return notes


NOT_IN_SHEET = "NOT_IN_SHEET.txt"  # in results/samples/{sample}/ of a sample the sheet no longer lists


def orphan_sample_notes(study_dir: Path, sheet, mark: bool = True) -> list[str]:
    """Mark the folders under results/samples/ of samples the sheet (polars DataFrame with sample_id) no longer lists
    with ``NOT_IN_SHEET`` (and unmark those listed again); returns the pre-run note naming them (one, or none).
    ``mark`` False (a dry run, which writes nothing): the note only. Trial AA: a removed sample's folder stayed
    among the others with nothing saying its files are used by nothing."""
    folder = Path(study_dir) / "results" / "samples"
    if not folder.is_dir():
        return []
    listed = {str(s) for s in sheet["sample_id"].to_list()}
    orphans = []
    for sample in sorted(p for p in folder.iterdir() if p.is_dir()):
        note = sample / NOT_IN_SHEET
        if sample.name in listed:
            if mark:
                note.unlink(missing_ok=True)
            continue
        orphans.append(sample.name)
        if mark and not note.exists():
            write_text(f"Sample '{sample.name}' is not in the study's sample sheet: the files in this folder are from "
                       "an earlier run and no result of the study uses them. Delete the folder when you no longer "
                       "need them; add the sample back to the sheet and it is used (and this note removed) again.\n",
                       note)
    if not orphans:
        return []
    end = (f" (each has a {NOT_IN_SHEET}); delete them when you no longer need them" if mark
           else f"; a run (not a dry run) marks each with a {NOT_IN_SHEET}")
    return [(f"results/samples/ holds the folders of {len(orphans)} sample(s) no longer in the sheet "
             f"({_named(orphans)}): no result uses them{end}")]
