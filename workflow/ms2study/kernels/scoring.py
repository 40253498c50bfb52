"""Transitional: the kernels that lived here are now in ms2study.kernels.cosine, .entropy, .embedding and .peaks.

Imported here only until the modules outside kernels/ that still say ``from ms2study.kernels import scoring``
are switched to the new modules; then this file is deleted. Add nothing here.
"""

from ms2study.kernels.cosine import PARALLEL_MIN_PAIRS, cosine_candidates, cosine_pair, power_weights_rows  # noqa: F401
from ms2study.kernels.embedding import embedding_candidates, top_k_by_embedding  # noqa: F401
from ms2study.kernels.entropy import (  # noqa: F401
    entropy_candidates,
    entropy_pair,
    prepare_entropy_one,
    prepare_entropy_peaks,
)
from ms2study.kernels.peaks import random_fragment_decoys  # noqa: F401
