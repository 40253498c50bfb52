"""The study report's building blocks: HTML text, interactive charts and tables, reading the results handed to the
report, and the report's sections.

``html`` holds escaping, number formatting, static tables, ranked warning boxes and the page around the sections
(plotly.js and the DataTables bundle embedded once, so the file opens offline); ``charts`` the plotly figures (ROC,
sample maps, volcano, class enrichment, mirror plots, chromatograms); ``maps`` the 2-D sample maps behind them;
``tables`` the sortable, filterable tables (itables, offline mode); ``collect`` the report's inputs (``ReportInputs``:
every file named by the caller, no path derived here) and what is read from them; ``findings`` the main findings box at
the top of the page; ``sections``, ``outcomes``, ``qc`` and ``spectra`` the sections of the page. The stage
``ms2study.stages.report`` puts them together. Modules here may import ``ms2study.core``, ``ms2study.io``,
``ms2study.library`` and ``ms2study.modelling``, never ``ms2study.stages`` or the CLI.
"""
