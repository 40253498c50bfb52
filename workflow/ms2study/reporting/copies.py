"""Runs that are copies of one injection, counted by the sample sheet as separate samples: byte-identical run files,
and runs whose every value in the linked feature matrix is the same (one acquisition converted or copied twice, so
the files differ in a header byte while the spectra do not). Their tests and models count one injection several
times: each group is a caution on the models and the tests, and Main findings says the counts are not evidence.
May import ``ms2study.core``, ``ms2study.io`` and ``reporting.html``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.io.runfiles import identical_runs
from ms2study.reporting.html import DOUBT, Caution, esc

FILES_LABEL = "identical run files"
VALUES_LABEL = "identical run values"
MIN_DETECTED = 10  # a run with fewer detected features (an empty or failed run) is not compared


def _caution(ids: list[str], what: str, label: str) -> Caution:
    return Caution(
        f"runs <b>{esc(', '.join(ids))}</b> {what}: every test, interval and model counts that one injection "
        f"{len(ids)} times, so their p-values, q-values, intervals and AUCs overstate the evidence, and a difference "
        "between copied runs is no biological difference; remove the extra rows from the sample sheet", DOUBT,
        f"{label} ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})", ("models", "differential"))


def identical_run_cautions(sheet: pl.DataFrame, study_dir: Path) -> list[Caution]:
    """A caution (``DOUBT``, on the models and the tests) per group of the sheet's runs whose files are byte-identical
    (``io.runfiles.identical_runs``; ``file`` relative to ``study_dir``, missing files skipped): one injection counted
    several times. Trial AD: six copies of two real runs gave "2253 of 2253 tested features differ" with intervals of
    zero width, and the report said only "possible replicate injections" (the pre-run warning was in the terminal
    only). [] without a file column or copies."""
    if not {"sample_id", "file"} <= set(sheet.columns):
        return []
    groups = identical_runs(Path(study_dir), sheet["sample_id"].to_list(), sheet["file"].to_list())
    return [_caution(ids, "are byte-identical copies of one run file", FILES_LABEL) for ids in groups]


def identical_value_groups(matrix: pl.DataFrame | None, sample_ids: Sequence[str]) -> list[list[str]]:
    """Groups (in ``sample_ids`` order) of runs whose columns of the linked feature matrix (``consensus_id`` rows,
    one column per run) are equal value for value, detected or not, with at least ``MIN_DETECTED`` detected features.
    Two injections, even of one vial, never give equal heights for thousands of features; one acquisition copied or
    converted twice does (trial AS: two real Q Exactive runs each copied with one header comment added)."""
    if matrix is None:
        return []
    by_values: dict[bytes, list[str]] = {}
    for sample in sample_ids:
        if sample not in matrix.columns:
            continue
        column = matrix[sample].cast(pl.Float64)
        if column.drop_nulls().len() < MIN_DETECTED:
            continue
        by_values.setdefault(column.fill_null(np.nan).to_numpy().tobytes(), []).append(sample)
    return [ids for ids in by_values.values() if len(ids) > 1]


def identical_value_cautions(matrix: pl.DataFrame | None, sample_ids: Sequence[str],
                             already: Sequence[Caution] = ()) -> list[Caution]:
    """A caution per group of ``identical_value_groups`` that the byte-identical cautions ``already`` given do not
    name in full."""
    named = [str(c) for c in already]
    return [_caution(ids, "hold the same value for every feature of the linked matrix: copies of one acquisition "
                          "(the same raw file converted or copied twice), though their files differ", VALUES_LABEL)
            for ids in identical_value_groups(matrix, sample_ids)
            if not any(f"<b>{esc(', '.join(ids))}</b>" in text for text in named)]


def copied(warnings: Sequence[str]) -> bool:
    """Whether ``warnings`` hold a caution of copied runs (either kind)."""
    return any(str(getattr(w, "label", "")).startswith((FILES_LABEL, VALUES_LABEL)) for w in warnings)
