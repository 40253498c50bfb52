"""The densest window of a set of votes: where many measurements of one quantity agree among scattered wrong ones.

Used for m/z calibration offsets in ppm: each pair of a run's ion and a reference ion (another run's feature,
``correction.mzoffset``; a library spectrum matched with high spectral similarity, ``identification.recalibration``)
votes with its m/z difference. Pairs of the same ion pile up at the run's offset; wrong pairs spread evenly over the
span searched. The offset is the median of the votes within ``half_width`` of the median of the densest window of
width 2 x ``half_width``, accepted when that window holds at least ``min_votes`` votes and ``min_contrast`` times
what an even spread of all votes over ``[-span, span]`` would put into it. Imports numpy only.
"""

from __future__ import annotations

import numpy as np


def densest_window(votes: np.ndarray, half_width: float, span: float, min_votes: int, min_contrast: float
                   ) -> tuple[float | None, int]:
    """(the median of the densest window's votes, their number), or (None, that number) when the window does not
    stand out (see the module docstring). ``votes``: shape (n,), any order; values outside ``[-span, span]`` and
    non-finite ones are ignored. Raises ValueError for a ``half_width`` or ``span`` that is not positive."""
    if half_width <= 0 or span <= 0:
        raise ValueError(f"half_width and span must be positive (got {half_width}, {span})")
    votes = np.asarray(votes, dtype=np.float64)
    votes = np.sort(votes[np.isfinite(votes) & (np.abs(votes) <= span)])
    if votes.size == 0:
        return None, 0
    # for each vote, the votes up to the window's width above it; the fullest such window
    ends = np.searchsorted(votes, votes + 2.0 * half_width, side="right")
    start = int(np.argmax(ends - np.arange(votes.size)))
    centre = float(np.median(votes[start:ends[start]]))
    inside = votes[np.abs(votes - centre) <= half_width]
    even = votes.size * (2.0 * half_width) / (2.0 * span)
    if inside.size < min_votes or inside.size < min_contrast * even:
        return None, int(inside.size)
    return float(np.median(inside)), int(inside.size)
