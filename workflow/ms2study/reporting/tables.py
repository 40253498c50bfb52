"""Sortable, filterable tables of the report: DataTables through itables, in its offline mode.

``offline_init_html`` returns the DataTables bundle shipped inside the itables package (its JavaScript and CSS,
base64-encoded, loaded from the page itself: itables' ``init_notebook_mode(connected=False)`` cell), written once
in the page; every ``interactive_table`` is then ``itables.to_html_datatable(..., connected=False)``, which waits for
that bundle and otherwise shows a static preview of the rows. No address outside the file is requested. itables
escapes cell text (``allow_html`` is left off). Documentation: https://mwouts.github.io/itables/ (offline mode,
HTML export). May import ``ms2study.core``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import polars as pl

# search box and page length above, paging and row counts below the table
LAYOUT = {"topStart": "pageLength", "topEnd": "search", "bottomStart": "info", "bottomEnd": "paging"}


def offline_init_html() -> str:
    """The DataTables bundle of itables (JavaScript and CSS, about 1 MB as base64), to be written once per page
    before any ``interactive_table``."""
    from itables import options
    from itables.javascript import generate_init_offline_itables_html

    html = generate_init_offline_itables_html(options.dt_bundle)
    # itables adds a <noscript> note meant for notebooks; a report has no "trusted notebook" to speak of
    return re.sub(r"<div[^>]*>\s*<noscript>.*?</noscript>\s*</div>", "", html, flags=re.DOTALL)


def significant(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded to ``digits`` significant digits (None, NaN: None), so tables show 0.00012, not 0.0001234."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


# Columns shown with fixed decimals instead of significant digits: m/z needs its fourth decimal (isomers and
# neighbours differ there), retention times one decimal of a second, RT residuals two (a run aligned to a copy of
# itself printed "2.2700e-13").
FIXED_DECIMALS = {"m/z": 4, "mz": 4, "precursor m/z": 4, "precursor_mz": 4, "RT (s)": 1, "rt_s": 1,
                  "median RT shift (s)": 1, "in-source fragment of m/z?": 4, "RT residual to reference (s)": 2}


def interactive_table(frame: pl.DataFrame, table_id: str, order: Sequence[tuple[str, str]] = (),
                      page_length: int = 10, digits: int = 3) -> str:
    """``frame`` as a DataTables table (sort by clicking a header, filter with the search box, pages of
    ``page_length`` rows); ``order`` is the initial sort as (column, "asc" | "desc") pairs. Float columns are
    rounded to ``digits`` significant digits (m/z and retention-time columns: ``FIXED_DECIMALS``); list columns are
    joined with ", ". ``table_id`` must be unique in
    the page (letters, digits, _ and -). Raises ValueError for an unknown ``order`` column."""
    from itables import to_html_datatable

    columns = list(frame.columns)
    unknown = [c for c, _ in order if c not in columns]
    if unknown:
        raise ValueError(f"order by unknown column(s) {unknown}")
    exprs = []
    for name, dtype in frame.schema.items():
        if dtype.is_float() and name in FIXED_DECIMALS:
            exprs.append(pl.col(name).round(FIXED_DECIMALS[name]))
        elif dtype.is_float():
            exprs.append(pl.col(name).map_elements(lambda v: significant(v, digits), return_dtype=pl.Float64))
        elif isinstance(dtype, pl.List):
            exprs.append(pl.col(name).list.eval(pl.element().cast(pl.Utf8)).list.join(", "))
        else:
            exprs.append(pl.col(name))
    shown = frame.select(exprs) if frame.width else frame
    html = to_html_datatable(
        shown, connected=False, table_id=table_id, display_logo_when_loading=False, show_dtypes=False,
        order=[[columns.index(c), d] for c, d in order], layout=LAYOUT, pageLength=page_length,
        lengthMenu=[10, 25, 100, 1000], classes="display compact", maxBytes=0, warn_on_undocumented_option=False)
    # links to itables.org in the loading text and the static preview's header: the report links nowhere else
    html = re.sub(r"<sup>.*?</sup>", "", html, flags=re.DOTALL)
    return re.sub(r"\(need <a href=https://itables\.org/[^>]*>help</a>\?\)", "", html)


def marked_features_table(marked: pl.DataFrame, columns: dict[str, str], table_id: str, order_column: str) -> str:
    """A sortable table of marked consensus features (``marked``, rows already chosen and ordered): the ``columns``
    it has (column -> header), ``excluded`` shown as "yes" / empty, ordered by ``order_column``'s header
    descending."""
    rows = marked.select([c for c in columns if c in marked.columns])
    if "excluded" in rows.columns:
        rows = rows.with_columns(pl.when(pl.col("excluded").fill_null(False)).then(pl.lit("yes"))
                                 .otherwise(pl.lit("")).alias("excluded"))
    rows = rows.rename({c: columns[c] for c in rows.columns})
    return interactive_table(rows, table_id, order=[(columns[order_column], "desc")])


def class_path(column: str = "compound_class") -> pl.Expr:
    """``column`` (a ChemOnt class path, "CHEMONTID:0000185; Organic compounds; Benzenoids; ...", as MassBank records
    give it) as the report's tables show it: without the leading identifier, the names only."""
    return pl.col(column).cast(pl.Utf8).str.replace(r"^CHEMONTID:\d+;\s*", "").alias(column)
