"""Checks on a study's run files as a whole (the sheet's ``file`` column): the same run under two sample ids.

Imports ``core`` only.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

CHUNK = 1 << 20  # bytes read at a time when hashing


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


def identical_run_warnings(study_dir: Path, sheet) -> list[str]:
    """A warning per group of sample ids whose run files are byte-identical (``identical_runs``); ``sheet``: the
    sample sheet (polars DataFrame with sample_id and file)."""
    groups = identical_runs(study_dir, sheet["sample_id"].to_list(), sheet["file"].to_list())
    path_of = {sid: (Path(study_dir) / f).resolve() for sid, f in zip(sheet["sample_id"].to_list(),
                                                                      sheet["file"].to_list())}
    warnings = []
    for ids in groups:
        # a trial: one file listed twice was called "a copied or twice-listed file?"; the sheet says which
        same = len({path_of[i] for i in ids}) == 1
        what = f"name the same file ({path_of[ids[0]].name})" if same else "have byte-identical run files"
        warnings.append(f"samples {', '.join(ids)} {what}: one injection counted {len(ids)} times"
                        + ("" if same else " (a copied file?)")
                        + "; remove the extra rows from the sample sheet unless that is meant")
    return warnings
