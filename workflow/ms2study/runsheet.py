"""What changed in the sample sheet since the last finished run (``sheet_change_note``).

Snakemake reruns the study stages after an edit of ``samples.tsv`` and says only which jobs; a dry run named changed
configuration values (``runconfig``) but not a changed outcome cell (trial AV: a sample moved from control to case
listed 13 study jobs without a word of why). ``ms2study run`` compares the sheet the stages will read
(``io.samplesheet.study_sheet``) with the one of the last finished run (``LAST_SHEET``, written by ``remember_sheet``;
before the first, ``results/study/samples.tsv``, which the Snakefile rewrites even in a dry run, so a second dry run
lost the note: trial AY), and names the rows added and removed and the cells changed, before the run. Used by
``ms2study.runner``.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

STUDY_SHEET = Path("results") / "study" / "samples.tsv"  # rules/sheet.smk
LAST_SHEET = Path("results") / ".last_finished_run_samples.tsv"  # the sheet the last finished run's stages read
SHOWN = 8  # changed cells named; the rest counted


def _names(ids: list[str]) -> str:
    return ", ".join(ids[:SHOWN]) + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def sheet_change_note(study_dir: Path, sheet: pl.DataFrame) -> str | None:
    """One line naming how ``sheet`` (the validated sheet the study stages are about to read, with sample_id) differs
    from the last finished run's (``LAST_SHEET``, else ``STUDY_SHEET``): rows added and removed, columns added and
    removed, and changed cells as "S09 group: control -> case". None when there is no earlier sheet, it cannot be read,
    or nothing differs. Values are compared as text, as the file holds them."""
    path = Path(study_dir) / LAST_SHEET
    path = path if path.exists() else Path(study_dir) / STUDY_SHEET
    try:
        old = pl.read_csv(path, separator="\t", infer_schema_length=0)
        new = pl.read_csv(io.StringIO(sheet.write_csv(separator="\t")), separator="\t", infer_schema_length=0)
    except (OSError, pl.exceptions.PolarsError):
        return None
    if "sample_id" not in old.columns or "sample_id" not in new.columns:
        return None
    before = {r["sample_id"]: r for r in old.iter_rows(named=True)}
    after = {r["sample_id"]: r for r in new.iter_rows(named=True)}
    said = []
    added = [s for s in after if s not in before]
    removed = [s for s in before if s not in after]
    if added:
        said.append(f"rows added: {_names(added)}")
    if removed:
        said.append(f"rows removed: {_names(removed)}")
    columns_added = [c for c in new.columns if c not in old.columns]
    columns_removed = [c for c in old.columns if c not in new.columns]
    if columns_added:
        said.append(f"columns added: {_names(columns_added)}")
    if columns_removed:
        said.append(f"columns removed: {_names(columns_removed)}")
    shared = [c for c in new.columns if c in old.columns and c != "sample_id"]
    cells = [f"{s} {c}: {before[s][c] if before[s][c] is not None else '(empty)'} -> "
             f"{after[s][c] if after[s][c] is not None else '(empty)'}"
             for s in after if s in before for c in shared if before[s][c] != after[s][c]]
    if cells:
        said.append(f"{len(cells)} cell(s) changed: " + "; ".join(cells[:SHOWN])
                    + (f"; and {len(cells) - SHOWN} more" if len(cells) > SHOWN else ""))
    if not said:
        return None
    return "the sample sheet changed since the last finished run: " + "; ".join(said)


def remember_sheet(study_dir: Path, sheet: pl.DataFrame) -> None:
    """Keep ``sheet`` (the validated sheet of a run that finished) as ``LAST_SHEET`` for the next run's note."""
    from ms2study.core.atomic import write_text

    if (Path(study_dir) / "results").is_dir():
        write_text(sheet.write_csv(separator="\t"), Path(study_dir) / LAST_SHEET)
