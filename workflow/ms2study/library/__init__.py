"""Reference libraries: reading, building and the on-disk index (peaks, metadata, embeddings). Depends on core, io and kernels."""
