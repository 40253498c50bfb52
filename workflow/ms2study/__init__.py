"""ms2study: a Snakemake pipeline for batch LC-MS/MS metabolomics studies.

Each stage is a module with a plain function API; the Snakemake rules, the
``ms2study`` command line and the tests all call the same functions.
"""

__version__ = "0.1.0"
