"""The study report's building blocks: HTML text, hand-drawn SVG charts, reading the results handed to the report,
and the report's sections.

``html`` holds escaping, number formatting, tables, warning boxes and the page around the sections; ``charts`` the SVG
charts and the 2-D sample maps; ``collect`` the report's inputs (``ReportInputs``: every file named by the caller,
no path derived here) and what is read from them; ``sections`` and ``outcomes`` the sections of the page. The stage
``ms2study.stages.report`` puts them together. Modules here may import ``ms2study.core``, ``ms2study.io`` and
``ms2study.modelling``, never ``ms2study.stages`` or the CLI.
"""
