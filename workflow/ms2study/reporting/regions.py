"""The report's account of the bag-of-chemistry model: which prototype regions it leans on and which features make
each region's difference (``results/study/attribution/chemical_space/{outcome}.parquet``, written by the
attribution stage; method in ``modelling.regions``), and a caution when much of it rests on regions whose
difference is where a feature's spectra were placed (trial AL: one of the two regions behind a "separates" verdict
was a background ion placed in different regions in different runs).
May import ``core``, ``modelling`` and other ``reporting`` modules.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ms2study.core.errors import InputError
from ms2study.modelling.differential import read_summary
from ms2study.reporting.html import DOUBT, Caution, esc
from ms2study.reporting.tables import interactive_table

TOP_REGIONS = 10
NOTED_SHARE = 0.25  # a caution when regions with a note carry this much of the model's absolute contribution
REGION_COLUMNS = {"rank": "rank", "region": "region", "contribution": "contribution", "direction": "direction",
                  "log2_fold": "log2 fold", "empty": "runs with nothing there ({})", "driver": "main feature",
                  "log2_fold_without_driver": "log2 fold without it", "pooled": "runs with its MS/MS ({})",
                  "in_region": "in region ({})",
                  "features": "features making the difference", "note": "note"}


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def regions_part(path: Path | None, outcome: str, warnings: list[str], caveat: str | None = None) -> str:
    """The regions the bag-of-chemistry model of ``outcome`` leans on (up to ``TOP_REGIONS`` with a non-zero
    contribution), or "" when no table is given; a caution in ``warnings`` when regions with a placement note
    carry ``NOTED_SHARE`` or more of the model and the model beats chance (``caveat`` None).
    Raises InputError naming the file when it lacks the columns."""
    if path is None:
        return ""
    title = "<h4>What the bag-of-chemistry model looks at</h4>"
    if caveat:
        title = ("<h4>What the bag-of-chemistry model looks at (a model without shown signal: not evidence)</h4>"
                 f'<p class="note caveat"><b>Read with caution</b>: {esc(caveat)}.</p>')
    if not Path(path).exists():
        return title + f"<p>The region table <code>{esc(Path(path).name)}</code> is missing.</p>"
    summary = read_summary(path)
    table = pl.read_parquet(path)
    missing = [c for c in ("region", "contribution", "rank", "note") if c not in table.columns]
    if missing:
        raise InputError(f"the region table of outcome {outcome} lacks column(s) {missing}", file=str(path),
                         fix="rerun the attribution stage")
    if summary.get("status") != "done":
        return title + f"<p>Not explained: {esc(summary.get('reason') or 'no reason recorded')}.</p>"
    used = table.filter(pl.col("contribution") != 0).sort("rank")
    if used.height == 0:
        return title + ("<p>The final bag-of-chemistry model kept no region (its regularisation shrank every weight "
                        "to zero): there is nothing to explain.</p>")
    noted, share = summary.get("noted_regions") or [], float(summary.get("noted_share") or 0.0)
    if noted and share >= NOTED_SHARE and not caveat:
        warnings.append(Caution(
            f"outcome <b>{esc(outcome)}</b>: {share:.0%} of what the bag-of-chemistry model leans on comes from "
            f"prototype region{'s' if len(noted) > 1 else ''} {', '.join(str(r) for r in noted)}, whose difference "
            "is partly where a feature's spectra were placed (near a region border, in one region in one class's "
            "runs and in another in the other's), not how much of a compound there is; judge that model's result "
            "beside the feature matrix's and the region table under 'What differs'", DOUBT, "placement",
            (f"models:{outcome}",)))
    positive = str(summary.get("positive_class") or "positive")
    other = next((str(c) for c in summary.get("classes") or [] if str(c) != positive), "other")
    classes = f"{positive} / {other}"
    columns = {c: header.format(classes) for c, header in REGION_COLUMNS.items()}
    rows = used.head(TOP_REGIONS).with_columns(
        pl.format("{} / {}", "n_empty_positive", "n_empty_reference").alias("empty"),
        pl.format("{} / {}", "driver_pooled_positive", "driver_pooled_reference").alias("pooled"),
        pl.coalesce(pl.when(pl.col("driver_msi_level").is_not_null()).then(pl.format(
            "{} (level {})", "driver_name", "driver_msi_level")).otherwise("driver_name"), "driver_id").alias("driver")
        if "driver_msi_level" in used.columns else pl.coalesce("driver_name", "driver_id").alias("driver"),
        pl.format("{} / {}", pl.col("driver_in_region_positive").map_elements(_percent, return_dtype=pl.Utf8),
                  pl.col("driver_in_region_reference").map_elements(_percent, return_dtype=pl.Utf8)).alias("in_region"),
        pl.col("note").fill_null(""))
    text = (f'<p class="note">The {rows.height} prototype regions (of {summary.get("n_regions")}, '
            f'{summary.get("regions_used")} used) the bag-of-chemistry model leans on most. '
            "A region is a neighbourhood of the spectrum-embedding "
            "space (prototypes learned once by k-means); a sample's value there is the log of the summed abundance of "
            "its features whose MS/MS falls in it. Contribution: the region's part in the model's score, positive "
            "class mean minus the other's (log-odds; the regions' values add up to the difference between the "
            "classes' mean scores); its direction is where the region pushes the score, which the model weighs "
            "together with the other regions, so a region can push toward a class while its own total is lower "
            "there. Log2 fold: the classes' mean log2 region totals, as the model sees them (a run with nothing "
            "in the region filled with half the region's smallest total). The main feature is the consensus "
            "feature whose removal from every run lowers the region's log2 fold most (the log2 fold without it "
            "beside it), with the runs of each class in which its MS/MS was acquired and how often its spectra fell "
            "in the region in those runs: well below 100 % in either class means the region's difference is partly "
            "where a feature's spectra fell near a region border, not how much of it there is; a note says so when "
            "the main feature, or another carrying a third of its log2 fold or more, lies in the region in fewer "
            "than 80 % of a class's runs. A named main feature carries its identification's level (level 3: this "
            "compound or an isomer). The main features' q-values are in the differential table above. A "
            "compound that rises is often fragmented (DDA picks the most intense ions) only in the runs where it is "
            f"abundant, so its region is empty in the others. {esc(summary.get('units') or '')}</p>")
    shown = [c for c in columns if c in rows.columns]
    return title + text + interactive_table(rows.select(shown).rename({c: columns[c] for c in shown}),
                                            "regions-" + "".join(ch if ch.isalnum() else "_" for ch in outcome),
                                            order=[("rank", "asc")])
