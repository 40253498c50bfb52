"""Numba kernels: peak matching, cosine and entropy similarity, embedding top-k, decoy fragments. Pure array code, no file I/O; depends on nothing else in ms2study."""
