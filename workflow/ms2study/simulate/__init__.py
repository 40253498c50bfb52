"""Simulated studies with known truth: precursor ions and in-silico fragmentation, compounds, study designs, mzML
runs, the realistic profile and its features known from truth. Imports ``ms2study.core`` only (never io, stages or
the CLI); ``study`` is the entry point (``simulate_study``, ``simulate_features``, the ``simulate`` subcommand)."""
