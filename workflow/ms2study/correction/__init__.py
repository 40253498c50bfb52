"""Batch-study corrections of the study feature matrix: blank filtering, gap filling from raw MS1, QC-based drift and
batch correction, internal-standard normalisation, and grouping of one compound's adducts and isotopes.

Layer 4: imports ``core`` and ``io`` only; the ``correct`` and ``gapfill`` stages run it.
"""
