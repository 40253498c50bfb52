"""Statistics of a study: feature sets, outcome encoding, nested cross-validated models and their metrics, the
per-feature differential tests with chemical class enrichment, and the pooling of spectrum embeddings into one vector
or a bag of chemistry per sample. Functions take and return tables and arrays and write no result files (the stages
do). May import ``core``, ``io`` and ``kernels``; never ``stages``, the CLI or the runner.
"""
