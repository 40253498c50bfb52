"""Identification logic below the stages: decoys, null-model confidence and FDR. Depends on core, kernels and library."""
