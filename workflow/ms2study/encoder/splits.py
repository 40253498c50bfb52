"""The structure-disjoint split of reference spectra into train, validation and test, and the licenses a shipped
model may be trained on.

A structure (first InChIKey block, the 2-D skeleton) goes wholly to one part by a seeded hash, so a model is never
evaluated on a structure it saw, and every consumer (training, learn-combined, calibration, benchmarks) recomputes
the same split from the seed and fractions recorded in the checkpoint. Imports only core.
"""

from __future__ import annotations

import hashlib

from ms2study.core.params import schema_defaults


# MassBank licenses that permit commercial use (a shipped model must be redistributable).
COMMERCIAL_LICENSES = ["CC BY", "CC BY-SA", "CC0", "dl-de/by-2-0"]

# The split the training stage uses by default (its seed, val_fraction, test_fraction and licenses parameters).
SPLIT_DEFAULTS = {k: schema_defaults("train")[k] for k in ("seed", "val_fraction", "test_fraction", "licenses")}


def assign_split(block: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """'train', 'val' or 'test' for a first InChIKey block: a seeded hash, stable across runs and machines."""
    u = int(hashlib.sha256(f"{seed}:{block}".encode()).hexdigest()[:12], 16) / float(16**12)
    if u < test_fraction:
        return "test"
    return "val" if u < test_fraction + val_fraction else "train"
