"""Shared fixtures: where the repository and the shared real data are."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} does not exist (CI and developers link ../shared)")
    return SHARED_DATA


# Session 43 appended the planted effect's columns to the simulator's ground_truth.tsv (demo: changed, log_fold,
# fold, realised_fold; realistic: fold, realised_fold); the digests pinned before stay the columns before them.
APPENDED_TRUTH_COLUMNS = {"demo": ("changed", "log_fold", "fold", "realised_fold"),
                          "realistic": ("fold", "realised_fold")}


def digest_without_appended(path: Path, profile: str) -> str:
    """sha256 of a ground_truth.tsv with the columns appended in session 43 cut off each line (asserted to be its
    last columns), as the file was written before them."""
    import hashlib
    appended = APPENDED_TRUTH_COLUMNS[profile]
    lines = path.read_bytes().split(b"\n")
    assert tuple(lines[0].decode().split("\t")[-len(appended):]) == appended
    kept = [b"\t".join(line.split(b"\t")[:-len(appended)]) if line else line for line in lines]
    return hashlib.sha256(b"\n".join(kept)).hexdigest()
