"""The one vocabulary for "no value recorded" in text that users write: sample sheets, tables from other tools and
library metadata. ``MISSING_TOKENS`` lists the cell texts read as missing (compared stripped and lower-cased);
``is_missing`` applies them to any cell value (None and float NaN are missing too). Library files add one placeholder
of their own, ``LIBRARY_PLACEHOLDERS`` ("unknown", which exporters write into empty metadata fields but which a
sample sheet may use as a recorded category). Part of the bottom layer: imports nothing from ms2study.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

# Texts a sample sheet or a table uses for "not recorded" (compared after strip() and lower()). A sample whose
# outcome is missing is left out of that outcome's model and listed; a missing covariate is imputed in the folds.
MISSING_TOKENS: frozenset[str] = frozenset({"", "na", "nan", "n/a", "null", "none", "missing", "-", "?"})
# Also missing in library metadata (MSP/MGF/JSON fields such as NAME: Unknown), never in a sample sheet.
LIBRARY_PLACEHOLDERS: frozenset[str] = frozenset({"unknown"})


def is_missing(value: Any, extra: Iterable[str] = ()) -> bool:
    """Whether a cell ``value`` means "no value": None, a float NaN, or a text in ``MISSING_TOKENS`` (or in
    ``extra``, lower-case texts such as ``LIBRARY_PLACEHOLDERS``) once stripped and lower-cased. Numbers and other
    objects are compared by their ``str``. Never raises."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    text = str(value).strip().lower()
    return text in MISSING_TOKENS or text in extra
