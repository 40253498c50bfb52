"""The report's "What differs" part, per outcome: the differential test's description, a volcano plot, every tested
feature in a sortable table (identifications, ion labels, flags), the class enrichment with the study-wide shift, and
the features the embedding model looks at. Moved out of ``reporting.outcomes`` (which keeps the outcome models). May
import ``ms2study.core``, ``ms2study.correction`` (adduct notation), ``ms2study.identification`` (background ions),
``ms2study.modelling`` and the other ``reporting`` modules but ``outcomes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ms2study.correction.adduct_notation import impossible_for_intrinsic_ion, same_ion
from ms2study.identification.background import BROAD_PEAK_RATIO, BROAD_START
from ms2study.modelling.differential import SIGNIFICANCE, read_summary, significant_compounds
from ms2study.reporting import cautions
from ms2study.reporting.batchonly import batch_only_of, batch_only_warning
from ms2study.reporting.charts import enrichment_figure, figure_html, volcano_figure
from ms2study.reporting.collect import DifferentialFiles
from ms2study.reporting.detectable import detectable_class_text, detectable_slope_text, detectable_text
from ms2study.reporting.explained import matrix_part
from ms2study.reporting.html import DOUBT, QUALITY, Caution, covariate_names, esc, p_value_text, q_cell
from ms2study.reporting.marks import name_marks, with_name_marks
from ms2study.reporting.qc import attribution_part
from ms2study.reporting.regions import regions_part
from ms2study.reporting.tables import class_path, interactive_table

DIFFERENTIAL_COLUMNS = {  # column of the differential table: header of the report's table
    "consensus_id": "consensus feature", "mz": "m/z", "rt_s": "RT (s)", "compound_group": "compound group",
    "ion": "ion", "name": "compound", "msi_level": "level (Schymanski)", "compound_class": "class",
    "identification_q_value": "id q"}

DIFFERENTIAL_TEXT = (
    '<p class="note">Each consensus feature is tested for each outcome on log2 intensities: a t-test '
    "(binary; with <code>models: covariates</code> a linear model of the class beside them, so the groups are "
    "compared at equal covariates), linear regression with the configured covariates (continuous) or an F-test "
    "across the classes (multiclass: one-way ANOVA, or beside the covariates ANCOVA). With "
    "<code>differential: test: moderated</code> (the default) a feature "
    "detected in every sample gets the moderated t- (or F-) test: its "
    "variance is shrunk towards that of features of similar "
    "intensity (limma-trend, Smyth 2004), which adds power to small studies (measured in benchmarks/README.md), "
    "and its p-value comes from the same statistic under permuted samples, pooled over features (as SAM and "
    "Perseus do), which keeps the q-values honest when the data are not normal; a feature with an imputed value "
    "(below) keeps its own variance (Welch t-test, plain regression or ANOVA), its p-value from permutations too, "
    "pooled over features with as many imputed values (an imputed value is a point mass the t and F "
    "distributions do not describe). The 'test' column says which (a value gap filling re-quantified from a run's MS1 "
    "signal is a measurement, not an imputation). Missing values are handled as "
    "in the outcome models: a feature that feature detection found (gap-filled values do not count) in fewer "
    "than <code>models: min_detected_fraction</code> of the samples of every class (of all samples for a "
    "continuous outcome) is not tested; otherwise a sample where it has no value gets half its smallest "
    "intensity (<code>imputation: features</code>). The 'measured' columns count gap-filled values. q-values are "
    "Benjamini-Hochberg over the tested features: of the features called at q &lt; 0.05, about 5 % are expected "
    "to be false discoveries (measured on real and simulated studies in <code>benchmarks/README.md</code>, "
    "'Differential analysis'). Identifications are the accepted ones (their own q in "
    "the 'id q' column). Chemical classes are tested as in ChemRICH (Barupal &amp; Fiehn 2017, Sci Rep "
    "7:14567) as a set, at every level of the class path: Fisher's combination of the class's compound p-values "
    "(each compound's Welch / regression / ANOVA test, adjusted for the covariates as above), its p-value from "
    "permutations of the samples' outcome labels (with covariates: of the outcome's residual from them; a class's "
    "compounds co-vary, which ChemRICH's Kolmogorov-Smirnov reading assumes away); the test is "
    "self-contained, so a shift of the whole sample with the outcome moves every class ('q, shift removed': the "
    "same test with each sample's median level over the tested features taken out first), "
    "with Benjamini-Hochberg q-values over the classes; 'up' and 'down' (two classes or a continuous outcome) "
    "count the class's compounds with p &lt; 0.05 in each direction, and 'direction' follows those counts (a class "
    "whose median fold change has the other sign is moved mostly by compounds below that p).</p>")


def _effect_text(summary: dict) -> tuple[str, str]:
    """(column of the effect, its header) for the outcome type."""
    if summary.get("type") == "continuous":
        return "log2_effect_per_unit", "log2 effect per unit"
    if summary.get("type") == "binary":
        adjusted = covariate_names(summary)
        return "log2_fold_change", (f"log2 FC ({summary.get('positive_class')} / {summary.get('reference_class')}"
                                    + (f", adjusted for {adjusted})" if adjusted else ")"))
    return "", ""


def _test_text(summary: dict) -> str:
    kind = summary.get("type")
    test = summary.get("test")
    moderated = test in ("moderated_t", "moderated_ols", "moderated_f") and summary.get("n_moderated")
    how = ""
    if moderated:
        permutations = summary.get("n_permutations") or 0
        how = (f"; {summary['n_moderated']} features with a value in every sample (detected or gap-filled) tested "
               "with moderated variances "
               f"(prior degrees of freedom {_prior_df(summary.get('prior_df'))}), p-values from "
               + (f"{permutations} permutations pooled over features" if permutations else "the t distribution"))
    imputed = summary.get("n_imputed_permuted")
    if imputed:
        classic = ("Welch" if test in ("moderated_t", "welch_t") else "ANOVA" if kind == "multiclass"
                   else "regression")
        how += (f"; {imputed} features with an imputed value (not detected, not gap-filled): "
                f"{classic} p-values from "
                f"{summary.get('imputed_permutations')} "
                + ("label permutations" if test in ("moderated_t", "welch_t") else "permutations of the residuals")
                + " pooled over features with as many imputed values")
    if kind == "binary":
        counts = summary.get("class_counts") or {}
        pos, ref = summary.get("positive_class"), summary.get("reference_class")
        covariates = esc(covariate_names(summary))
        if not covariates:
            name = "moderated t-test (Welch for features with an imputed value)" if moderated else "Welch t-test"
        elif moderated:
            name = (f"linear model of log2 intensity on the class, adjusted for {covariates} (moderated variances, "
                    "as limma fits ~ class + covariates; ordinary least squares for features with an imputed value)")
        else:
            name = f"linear model of log2 intensity on the class, adjusted for {covariates} (ordinary least squares)"
        detectable = summary.get("detectable_log2_fold_change")
        return (f"{name}{'' if covariates else ' on log2 intensities'}, <b>{esc(pos)}</b> "
                f"(n = {counts.get(pos, '?')}) against "
                f"<b>{esc(ref)}</b> (n = {counts.get(ref, '?')}); log2 FC &gt; 0: higher in {esc(pos)}"
                + (" at equal covariates" if covariates else "") + how
                + (f". {detectable_text(float(detectable), summary)}" if detectable else ""))
    if kind == "continuous":
        covariates = covariate_names(summary)
        return ("linear regression of log2 intensity on the outcome"
                + (f", adjusted for {esc(covariates)}" if covariates else "")
                + f" (n = {summary.get('n_samples')}); the effect is the log2 change per unit of the outcome{how}"
                + (f". {detectable_slope_text(float(slope), summary)}"
                   if (slope := summary.get("detectable_log2_effect_per_unit")) else ""))
    counts = ", ".join(f"{esc(k)}: {v}" for k, v in (summary.get("class_counts") or {}).items())
    covariates = esc(covariate_names(summary))
    name = (f"F-test of the classes beside {covariates} (ANCOVA)" if covariates else "one-way ANOVA")
    if moderated:
        name += " with moderated variances (limma's moderated F; ordinary F for features with an imputed value)"
    return (f"{name} on log2 intensities across the classes ({counts}); the F-test has no direction: the table names "
            f"each feature's highest and lowest class and the log2 difference of their means"
            + (f" at equal {covariates} (each class's mean at the covariates' mean, as the F-test compares)"
               if covariates else "") + how
            + (f". {detectable_class_text(float(shift), summary)}"
               if (shift := summary.get("detectable_log2_class_shift")) else ""))


def differential_section(differential: Sequence[DifferentialFiles], warnings: list[str],
                         attribution: dict[str, Path] | None = None, caveats: dict[str, str] | None = None,
                         with_ms2: set[str] | None = None, corrected: pl.DataFrame | None = None,
                         identifications: pl.DataFrame | None = None,
                         background: dict[str, str] | None = None,
                         regions: tuple[dict[str, Path], dict[str, str]] | None = None,
                         explained: tuple[dict[str, Path], dict[str, str]] | None = None) -> str:
    """Per outcome (in the order given): a volcano plot, every tested feature with its identification in a sortable,
    filterable table (sorted by q), the class enrichment (chart and table) and, when ``attribution`` has a table
    for the outcome (keyed by outcome name), the features the embedding model looks at, led by the outcome's
    caveat from ``caveats`` (``attribution_caveats``) when its model is not shown to beat chance. A table that is
    named but absent is a warning; an attribution table whose outcome has no differential results is a warning.
    The summary's own ``warnings``, a share of imputed features above a half and significant features without
    MS/MS (``with_ms2``: the consensus features with MS/MS, when known) are warnings too; ion labels grouped on mass
    and RT alone are marked (from the table's ``ion_tested``, else the ``corrected`` matrix), and an accepted
    identification's library adduct leads a label it disagrees with (``identifications``: :func:`identified_ions`);
    features at q < SIGNIFICANCE that are background ions (``background``: :func:`background_ions`) are a caution.
    ``regions``: the bag-of-chemistry model's region tables by outcome and their caveats (``reporting.regions``),
    shown after the attribution. ``explained``: the feature-matrix model's split by outcome and its caveats
    (``reporting.explained``), shown before the embedding attribution."""
    attribution = dict(attribution or {})
    region_tables, region_caveats = regions or ({}, {})
    explained_tables, explained_caveats = explained or ({}, {})
    if not differential:
        for name in attribution:
            warnings.append(f"attribution table for <b>{esc(name)}</b> given without its differential results")
        return ("<p>No differential analysis: no outcomes are declared under <code>models: outcomes</code> in "
                "config.yaml.</p>")
    parts, marked = [DIFFERENTIAL_TEXT], name_marks(identifications)  # the marks on names, read once for all
    for k, files in enumerate(differential):
        path = Path(files.table)
        if not path.exists():
            warnings.append(Caution(f"the differential table <code>{esc(path.name)}</code> is missing (run the "
                                    "pipeline to the end)", DOUBT))
            continue
        summary = read_summary(path)
        table = pl.read_parquet(path)
        outcome = summary.get("outcome") or path.stem
        parts.append(f"<h3>Outcome: {esc(outcome)} ({esc(summary.get('type'))})</h3>")
        cautions.summary_warnings(summary, outcome, warnings)
        tested = with_name_marks(batch_only_of(identified_ions(cautions.mark_untested_ions(
            table.filter(pl.col("tested")), corrected), identifications), corrected), marked)
        if "compound_group" in table.columns:  # members of a group counted over every feature, tested or not
            tested = tested.join(table.filter(pl.col("compound_group").is_not_null()).group_by("compound_group")
                                 .agg(pl.len().alias("_group_size")), on="compound_group", how="left",
                                 maintain_order="left")
        cautions.imputation_warning(tested, outcome, warnings)
        cautions.gap_filling_warning(tested, outcome, warnings)
        rt_spread_warning(tested, outcome, warnings)
        batch_only_warning(tested, outcome, warnings)
        hits = tested.filter(pl.col("q_value") < SIGNIFICANCE)["consensus_id"].cast(pl.Utf8).to_list()
        significant = len(hits)
        compounds = significant_compounds(tested) if "compound_group" in tested.columns else significant
        grouped = (f" ({compounds} compound group{'' if compounds == 1 else 's'}: isotope and adduct features of "
                   "one compound are tested one by one)" if compounds != significant else "")
        ms2 = cautions.significant_ms2(hits, with_ms2, outcome, warnings)
        background_warning(hits, background, outcome, warnings)
        parts.append(f"<p>{_test_text(summary).rstrip('.')}. {tested.height} of {table.height} consensus features "
                     "tested; "
                     f"<b>{significant}</b> at q &lt; {SIGNIFICANCE:g}{grouped}.{' ' + ms2 if ms2 else ''}</p>")
        for note in summary.get("notes") or []:
            if note.startswith("not tested"):
                warnings.append(Caution(f"outcome <b>{esc(outcome)}</b>: no differential test ({esc(note)})", DOUBT,
                                        "not tested", (f"differential:{outcome}",)))
            parts.append(f'<p class="note">{esc(note)}</p>')
        effect, effect_header = _effect_text(summary)
        charts = []
        if tested.height and effect:
            charts.append(figure_html(volcano_figure(tested, effect, effect_header, f"Volcano: {outcome}",
                                                     SIGNIFICANCE)))
        enrichment_html, enrichment_chart = _enrichment_part(files.enrichment, summary, effect_header, outcome, k)
        charts += [enrichment_chart] if enrichment_chart else []
        if charts:
            parts.append('<div class="charts">' + "".join(charts) + "</div>")
        if tested.height:
            parts.append(_feature_table(tested, summary, effect, effect_header, f"differential-{k}", background))
        parts.append(enrichment_html)
        parts.append(matrix_part(explained_tables.get(outcome), outcome, table, effect, effect_header,
                                 explained_caveats.get(outcome)))
        parts.append(attribution_part(attribution.pop(outcome, None), outcome, caveat=(caveats or {}).get(outcome)))
        parts.append(regions_part(region_tables.get(outcome), outcome, warnings, region_caveats.get(outcome)))
    for name in attribution:
        warnings.append(f"attribution table for <b>{esc(name)}</b> given, but no differential results of that "
                        "outcome: not shown")
    return "".join(parts)


def background_ions(links: Path | None, features: Sequence[Path | None]) -> dict[str, str]:
    """consensus_id -> its background-ion note (``identification.background.background_notes``: half-height width
    at least half of the run's RT span, or ``BROAD_PEAK_RATIO`` times the run's median, in half or more of the runs
    detecting it) from the link stage's ``links`` and
    the runs' features tables; {} when either is missing or the tables lack the extents or widths."""
    from ms2study.core.errors import InputError
    from ms2study.identification.background import background_notes, read_extents

    paths = [f for f in features if f is not None and Path(f).exists()]
    if links is None or not Path(links).exists() or not paths:
        return {}
    try:
        extents = read_extents(paths)
    except InputError:  # tables written before the detect stage kept the extents: nothing to judge
        return {}
    if extents["fwhm_s"].is_null().all():
        return {}
    notes = background_notes(pl.read_parquet(links), extents)
    return dict(zip(notes["consensus_id"].to_list(), notes["background_note"].to_list()))


def background_warning(hits: list[str], background: dict[str, str] | None, outcome: str, warnings: list) -> None:
    """A caution naming the features at q < SIGNIFICANCE (``hits``) that are background ions or broad peaks
    (``background``: ``background_ions``): a trial's largest effect was such an ion (present through the run,
    detected in 10 of 10 after runs and 4 of 10 before runs), marked only as resting partly on imputed values."""
    marked = [c for c in hits if c in (background or {})]
    if not marked:
        return
    shown = ", ".join(marked[:8]) + (" ..." if len(marked) > 8 else "")
    warnings.append(Caution(
        f"outcome <b>{esc(outcome)}</b>: {len(marked)} feature(s) at q &lt; {SIGNIFICANCE:g} are background ions "
        f"or broad peaks ({esc(shown)}): each has a half-height width of half its run's RT span, or of "
        f"{BROAD_PEAK_RATIO:g} times its run's median peak width, or more in half or more of the runs detecting it: "
        "an ion present through much of the run (a solvent, contaminant or bleed ion, or in a short run a broad peak "
        "cut by its ends) or peaks merged, not one compound eluting as a peak; a difference there may be the "
        "background's (its detection in some runs only, a shifted baseline), and a compound's narrower peak under "
        "it is summed with it (on a simulated study, a named compound's fold change on such a feature had the wrong "
        "sign), "
        "so check its chromatogram before reporting it",
        QUALITY, "background ions among the hits", (f"differential:{outcome}",)))


def identified_ions(tested: pl.DataFrame, identifications: pl.DataFrame | None) -> pl.DataFrame:
    """``tested`` with an ``ion`` label led by its feature's accepted identification where that library adduct is
    another ion (``adduct_notation.same_ion`` false; its ``adduct_note`` says why the match stands): "[M+H]+
    (library match); grouped as [M+K]+ (mass and RT only)"; a label no permanent ion can carry (a quaternary
    ammonium matched as [M]+ grouped as [M+Na]+, trial AW) says so. Unchanged without ``identifications`` or
    ``ion``."""
    if (identifications is None or "ion" not in tested.columns
            or not {"accepted", "adduct"} <= set(identifications.columns)):
        return tested
    library = (identifications.filter(pl.col("accepted").fill_null(False)).unique("consensus_id")
               .select(pl.col("consensus_id").cast(pl.Utf8), pl.col("adduct").cast(pl.Utf8).alias("_library")))
    frame = tested.join(library, on="consensus_id", how="left", maintain_order="left").with_columns(
        pl.col("ion").str.strip_suffix(cautions.UNTESTED_ION).alias("_label"))
    pairs = frame.select("_label", "_library").unique().drop_nulls()
    pairs = pairs.with_columns(
        pl.Series("_differs", [same_ion(*r) is False for r in pairs.iter_rows()], pl.Boolean),
        pl.Series("_impossible", [impossible_for_intrinsic_ion(*r) for r in pairs.iter_rows()], pl.Boolean))
    frame = frame.join(pairs, on=["_label", "_library"], how="left", maintain_order="left")
    impossible = pl.when(pl.col("_impossible")).then(pl.lit(", which a permanent ion cannot be")).otherwise(pl.lit(""))
    return frame.with_columns(pl.when(pl.col("_differs")).then(pl.col("_library") + " (library match); grouped as "
                                                               + pl.col("ion") + impossible)
                              .otherwise(pl.col("ion")).alias("ion")).drop("_label", "_library", "_differs",
                                                                           "_impossible")


def _readable(tested: pl.DataFrame) -> pl.DataFrame:
    """The differential rows as the table shows them: the monoisotopic feature of a compound group whose other
    members are its isotope peaks, which carries no label of its own, reads "M" (so the group's M, M+1, M+2 line
    up; its members are counted in ``_group_size`` where given, which counts untested members too, else among the
    tested rows); the ChemOnt identifier (``CHEMONTID:0000185;``) is dropped from the class path."""
    out = tested
    if {"ion", "compound_group"} <= set(out.columns):
        size = pl.col("_group_size") if "_group_size" in out.columns else pl.len().over("compound_group")
        out = out.with_columns(pl.when(pl.col("ion").is_null() & pl.col("compound_group").is_not_null() & (size > 1))
                               .then(pl.lit("M")).otherwise(pl.col("ion")).alias("ion"))
    if "compound_class" in out.columns:
        out = out.with_columns(class_path())
    if "rt_sd_flag" in out.columns:  # null: detected in too few samples to judge
        out = out.with_columns(pl.when(pl.col("rt_sd_flag").is_null()).then(pl.lit("not judged"))
                               .when(pl.col("rt_sd_flag")).then(pl.lit("yes")).otherwise(pl.lit(""))
                               .alias("rt_sd_flag"))
    return out


def rt_spread_warning(tested: pl.DataFrame, outcome: str, warnings: list[str]) -> None:
    """A warning naming the features at q < SIGNIFICANCE whose apex RT wanders over the study samples
    (``rt_sd_flag``, ``correction.rtspread``): each may sum co-eluting ions the instrument does not resolve, so its
    fold change and its name may belong to part of its signal."""
    if "rt_sd_flag" not in tested.columns or "q_value" not in tested.columns:
        return
    hits = tested.filter((pl.col("q_value") < SIGNIFICANCE).fill_null(False))
    flagged = hits.filter(pl.col("rt_sd_flag").fill_null(False))
    if not flagged.height:
        return
    named = ", ".join(flagged["consensus_id"].cast(pl.Utf8).head(8).to_list())
    more = f" and {flagged.height - 8} more" if flagged.height > 8 else ""
    warnings.append(Caution(
        f"outcome <b>{esc(outcome)}</b>: {flagged.height} of the {hits.height} features at q &lt; {SIGNIFICANCE:g} "
        f"have an apex RT that wanders over the study samples ({esc(named)}{more}; column 'RT spread flag'): such a "
        "feature may be the sum of two co-eluting ions the instrument does not resolve (isomers), whose apex moves "
        "towards whichever is larger in a sample. Its difference is real signal at that m/z and RT, but its fold "
        "change and any name on it may belong to only part of it; the pooled QCs cannot show this (see 'Batch, "
        "blanks and drift')", QUALITY, "may sum co-eluting ions", (f"differential:{outcome}",)))


def _feature_table(tested: pl.DataFrame, summary: dict, effect: str, effect_header: str, table_id: str,
                   background: dict[str, str] | None = None) -> str:
    """Every tested feature, sortable and filterable, sorted by q; with ``background`` (``background_ions``) a
    column marking the background ions and broad peaks (trial AJ: a persistent ion cut into 7 consensus features, one
    piece "measured only in exposed" at log2 +3.4 and p 0.001, unmarked below the hits)."""
    columns = dict(DIFFERENTIAL_COLUMNS)
    marked = {c: ("broad peak" if note.startswith(BROAD_START) else "through the run")
              for c, note in (background or {}).items()}
    if tested.height and marked and tested["consensus_id"].cast(pl.Utf8).is_in(list(marked)).any():
        tested = tested.with_columns(pl.col("consensus_id").cast(pl.Utf8).replace_strict(
            marked, default=None, return_dtype=pl.Utf8).alias("_background"))
    interval = bool(effect) and {"effect_ci_low", "effect_ci_high"} <= set(tested.columns)
    if effect:
        columns[effect] = effect_header
    if interval:  # a trial: fold changes without their uncertainty
        tested = tested.with_columns(pl.when(pl.col("effect_ci_low").is_not_null()).then(
            pl.format("{} to {}", pl.col("effect_ci_low").round(2), pl.col("effect_ci_high").round(2)))
            .otherwise(pl.lit("none (imputed value)")).alias("_interval"))
        columns["_interval"] = "95 % interval"
    columns |= {"p_value": "p", "q_value": "q"}
    if tested.height and "test" in tested.columns and tested["test"].n_unique() > 1:
        columns["test"] = "test"  # moderated for features detected in every sample, Welch (or OLS) for the others
    spread = "rt_sd_flag" in tested.columns and bool(tested["rt_sd_flag"].fill_null(False).any())
    if spread:
        columns["rt_sd_flag"] = "RT spread flag"
    if "_background" in tested.columns:
        columns["_background"] = "background ion?"
    if "_name_marks" in tested.columns:  # trial BE: a hit's weak name was marked in the identifications only
        columns["_name_marks"] = "marks on its name"
    if "batch_only" in tested.columns:
        columns["batch_only"] = "one batch only"
    # "measured", not "detected": gap-filled values count here (a trial read "detected (control) 1.0" for a feature
    # that detection never found in a control); the gap-filled share stands beside it
    if summary.get("type") == "binary":
        for side in ("positive", "reference"):
            name = summary.get(f"{side}_class")
            columns |= {f"detection_rate_{side}": f"measured ({name})",
                        f"gap_filled_rate_{side}": f"gap-filled ({name})"}
    else:
        columns |= {"detection_rate": "measured", "gap_filled_rate": "gap-filled"}
    if summary.get("type") == "multiclass":  # which classes differ, and which way (the F-test says neither)
        columns |= {"highest_class": "highest class", "lowest_class": "lowest class",
                    "log2_class_range": "log2 highest - lowest"}
    shown = _readable(tested).select([pl.col(c).alias(h) for c, h in columns.items() if c in tested.columns])
    parts = [f"<h4>Tested features ({tested.height}; sort by any column, filter with the search box)</h4>",
             interactive_table(shown, table_id, order=[("q", "asc"), ("p", "asc")])]
    parts.append('<p class="note">measured: share of the samples (of each class, for a binary outcome) in which '
                 "the feature has a value before the half-minimum imputation: detected, or re-quantified by gap "
                 "filling from the run's own MS1 signal; gap-filled: the share of the samples whose value gap filling "
                 "supplied (detection found the feature in the difference). id q: the identification's own q-value."
                 + (" 95 % interval: limma's interval of the effect (the feature's linear model, its variance "
                    "moderated as in the test); none for a feature with an imputed value, where a filled value at the "
                    "detection limit makes the interval too narrow (on simulated studies it covered the true fold "
                    "change in 90 % of such features, against 95 % where every value was measured)."
                    if interval else "")
                 + (" ion: where the accepted identification's library ion differs from the grouped label, it comes "
                    "first ('library match')." if "ion" in tested.columns
                    and tested["ion"].str.contains("(library match)", literal=True).any() else "")
                 + (" RT spread flag: the feature's apex RT varies over the samples far more than the study's "
                    "features do (<code>correct: rt_sd_ratio</code>); it may sum co-eluting ions." if spread else "")
                 + (" background ion?: the feature's half-height width is half its run or more ('through the run': "
                    "a solvent, contaminant or bleed ion, often cut into several features whose presence differs "
                    f"by chance) or {BROAD_PEAK_RATIO:g} times its run's median ('broad peak'), in half its runs or "
                    "more: a difference there may be the background's." if "_background" in tested.columns else "")
                 + (" one batch only: the batch in whose runs alone detection found the feature (see 'Batch, blanks "
                    "and drift')." if "batch_only" in tested.columns else "")
                 + (" test: moderated_t / moderated_ols / moderated_f for features measured in every sample, "
                    "welch_t / ols / anova for features with an imputed value (their p from permutations pooled by "
                    "the number imputed)."
                    if "test" in columns else "")
                 + (f" With {summary['n_permutations']} permutations over {summary.get('n_moderated')} features the "
                    f"smallest moderated p is {1 / (1 + summary['n_permutations'] * summary['n_moderated']):.2g}; "
                    "features at that floor are ordered by their "
                    f"{'F' if summary.get('type') == 'multiclass' else 't'}." if summary.get("n_permutations")
                    and summary.get("n_moderated") else "") + "</p>")
    return "".join(parts)


def _enrichment_part(path: Path | None, summary: dict, effect_header: str, outcome: str,
                     k: int) -> tuple[str, str | None]:
    """(HTML of the enrichment results, the enrichment chart's HTML or None)."""
    title = "<h4>Chemical class enrichment</h4>"
    if path is None or not Path(path).exists():
        return title + "<p>No class enrichment table.</p>", None
    enrichment = pl.read_parquet(path)
    if enrichment.height == 0:
        notes = read_summary(path).get("enrichment_notes") or ["no class could be tested"]
        return title + "".join(f'<p class="note">{esc(n)}</p>' for n in notes), None
    hits = enrichment.filter(pl.col("q_value") < SIGNIFICANCE)
    chart = figure_html(enrichment_figure(enrichment, f"Class enrichment: {outcome}", SIGNIFICANCE))
    if hits.height == 0:
        best = enrichment.sort("q_value").row(0, named=True)
        text = (f"<p>No chemical class is enriched at q &lt; {SIGNIFICANCE:g} ({enrichment.height} classes "
                f"tested; the lowest q is {q_cell(best['q_value'])[1]}, {esc(best['class_path'])}).</p>")
    else:
        text = (f"<p>{hits.height} of {enrichment.height} classes tested are enriched at q &lt; "
                f"{SIGNIFICANCE:g}.</p>")
    # direction counts only the members at p < alpha, the median all of them: a trial read "up" beside a median of
    # -0.001 as a contradiction, so each header says what it summarises
    alpha = f"p < {float(summary.get('alpha', 0.05)):g}"
    columns = {"class_path": "class", "class_level": "level", "n_compounds": "compounds",
               "n_significant": alpha, "n_up": "up", "n_down": "down",
               "direction": f"direction of members at {alpha}",
               "median_effect": f"median {effect_header or 'effect'}, all members",
               "p_value": "p", "q_value": "q", "q_value_shift_removed": "q, shift removed", "compounds": "members"}
    if summary.get("type") == "multiclass":  # an F-test has no direction: up/down held 0 for every class (a trial)
        columns = {c: h for c, h in columns.items() if c not in ("n_up", "n_down", "direction", "median_effect")}
        text += ('<p class="note">The outcome has more than two classes: the compounds\' F-tests have no direction, '
                 "so the class table has no 'up', 'down' or direction columns; the feature table's highest and "
                 "lowest class say which way each compound differs.</p>")
    if {"compounds", "consensus_ids"} <= set(enrichment.columns):  # trial AU: which feature stood for a compound
        enrichment = enrichment.with_columns(pl.Series("compounds", [
            [f"{n} ({c})" for n, c in zip(names or [], ids or [])]
            for names, ids in zip(enrichment["compounds"].to_list(), enrichment["consensus_ids"].to_list())],
            dtype=pl.List(pl.Utf8)))
        columns["compounds"] = "members (the consensus feature standing for each)"
    shown = enrichment.select([pl.col(c).alias(h) for c, h in columns.items() if c in enrichment.columns
                               and enrichment[c].null_count() < enrichment.height])  # an empty column says nothing
    text += "".join(f'<p class="note">{esc(n)}</p>' for n in read_summary(path).get("enrichment_notes") or [])
    text += class_floor_note(summary, enrichment)
    text += shift_note(summary)
    return title + text + interactive_table(shown, f"enrichment-{k}", order=[("q", "asc")]), chart


def class_floor_note(summary: dict, enrichment: pl.DataFrame) -> str:
    """A note when class p-values sit at the smallest value their permutations allow, 1 / (class_permutations + 1):
    a trial read p = 0.000999 without being told it was that floor. Empty otherwise."""
    n = summary.get("class_permutations")
    if not n or "p_value" not in enrichment.columns:
        return ""
    floor = 1.0 / (int(n) + 1)
    at = int((enrichment["p_value"] <= floor * (1 + 1e-9)).sum())
    if not at:
        return ""
    return (f'<p class="note">{at} class p-value(s) are {p_value_text(floor)} = 1/({int(n)} + 1), the smallest '
            f"{int(n)} label permutations can give (none reached the class's statistic): the true p may be smaller; "
            "<code>differential: class_permutations</code> sets the count.</p>")


def shift_note(summary: dict) -> str:
    """The study-wide shift measured over the tested features (``global_shift`` of the differential summary) as a
    note under the class table, whether or not Main findings names it, so that a reader can choose between 'q' and
    'q, shift removed'. Empty without it."""
    shift = summary.get("global_shift")
    if not shift:
        return ""
    share = float(shift["share_up"])
    unit = "log2" if summary.get("type") == "binary" else "log2 per unit"
    adjusted = covariate_names(summary)
    how = (f"permutations of the outcome's residual from {esc(adjusted)}" if adjusted else "label permutations")
    return (f'<p class="note">Study-wide shift over the {shift["n_features"]} tested features'
            + (f" (adjusted for {esc(adjusted)})" if adjusted else "") + ": median "
            f'{float(shift["median_effect"]):+.2g} {unit}, {100 * share:.0f} % of them up, p '
            f'{float(shift["p_value"]):.2g} ({shift["n_permutations"]} {how}; on null splits of a real urine study '
            "this p fell below 0.05 in 3-5 % of binary splits without covariates and 1-3 % of confounded ones "
            "adjusted for age, benchmarks/README.md). Where it is small and its p large, read "
            "'q'; where the whole sample moves with the outcome, 'q, shift removed' says which classes move beyond "
            "it.</p>")


def _prior_df(value: float | None) -> str:
    """limma's prior degrees of freedom as said: "infinite (every feature's variance taken as the common one)" at
    the cap of ``core.ebayes`` (1e6, no spread beyond chance between the features' variances), else with one
    decimal (a trial's report read "1000000.0")."""
    d0 = float(value or 0)
    return "infinite: the features' variances differ no more than chance" if d0 >= 1e6 else f"{d0:.1f}"
