"""Statistics of a study: feature sets, outcome encoding, nested cross-validated models and their metrics, the
per-feature differential tests with chemical class enrichment, and the pooling of spectrum embeddings into one vector
or a bag of chemistry per sample. Functions take and return tables and arrays; the stages decide which files are read
and written (the table formats that belong to these results, ``differential.write_table`` and
``chemistry.write_prototypes``, live here beside them). May import ``core``, ``io`` and ``kernels``; never
``stages``, the CLI or the runner.
"""
