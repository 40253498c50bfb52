"""Marks on accepted identifications that their q-value does not cover, as the report shows and counts them.

The q-value of a name measures its confusion with the library's other spectra; some of what makes a name wrong lies
outside that: the study's own ion grouping labelling the feature another ion than the library match's (an
[M+H-H2O]+ of a co-eluting heavier feature, on mass and retention time alone in a study too small to test the
pair's co-variation, so the grouping refused nothing: ``ion_label_marks``), and a feature that elutes over most of
its run (a background ion, ``identification.background``: the mark stands at the end of ``evidence_note``,
``background_marks``), besides the in-source and several-retention-times marks of identifications.parquet. The
identification table shows each beside the name and the Main findings count them (``mark_flags``). May import
``ms2study.core``, ``ms2study.correction`` (adduct notation) and ``ms2study.identification``.
"""

from __future__ import annotations

import polars as pl

from ms2study.correction.adduct_notation import impossible_for_intrinsic_ion, nh3_loss_reading, same_ion
from ms2study.identification import background, contaminants
from ms2study.identification.featuremz import MASS_APART

# identification table headers of the two marks (reporting.sections)
ION_LABEL_HEADER = "grouped as another ion?"
BACKGROUND_HEADER = "background ion?"


def plural(n: int, one: str, many: str) -> str:
    """``"{n} {one}"`` when ``n`` is 1, else ``"{n} {many}"`` (the Main findings' counts)."""
    return f"{n} {one if n == 1 else many}"


def _column(ident: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Series:
    return ident[name].cast(dtype) if name in ident.columns else pl.Series(name, [None] * ident.height, dtype=dtype)


def withdrawn(columns) -> pl.Expr:
    """The names withdrawn as in-source fragments (``identification.insource.withdrawn``, imported only when used:
    that module brings numba) of an identifications table with ``columns``."""
    from ms2study.identification.insource import withdrawn as rule

    return rule(columns)


def ion_label_marks(ident: pl.DataFrame) -> pl.Series:
    """Per row of ``ident`` (identifications.parquet), Utf8: for an accepted name whose feature the adduct grouping
    labelled another ion than the library match's (``feature_adduct`` vs ``adduct``: ``same_ion`` False, and not the
    [M+NH4]+ / [M+H]+ pair that also reads as an in-source NH3 loss), which label, of which partner (m/z and feature)
    and on what evidence: "[M+H-H2O]+ of m/z 189.1485 (C881) on mass and RT only (2 runs measured both); library match
    [M+H]+: refuses nothing". An accepted name with such a label was not refused, so its grouping was not tested
    (identify refuses on a tested label). Null elsewhere and where ``ident`` lacks the grouping columns."""
    accepted = _column(ident, "accepted", pl.Boolean).fill_null(False).to_list()
    labels = _column(ident, "feature_adduct", pl.Utf8).to_list()
    adducts = _column(ident, "adduct", pl.Utf8).to_list()
    partners = _column(ident, "adduct_partner", pl.Utf8).to_list()
    partner_mz = _column(ident, "adduct_partner_mz", pl.Float64).to_list()
    r = _column(ident, "adduct_correlation", pl.Float64).to_list()
    runs = _column(ident, "adduct_n_runs", pl.Int32).to_list()
    out: list[str | None] = []
    for ok, label, lib, partner, mz, corr, n in zip(accepted, labels, adducts, partners, partner_mz, r, runs):
        if (not ok or same_ion(label, lib) is not False or nh3_loss_reading(label, lib)
                or impossible_for_intrinsic_ion(label, lib)):
            out.append(None)
            continue
        of = (f" of m/z {mz:.4f}" if mz is not None else "") + (f" ({partner})" if partner else "")
        runs_text = f"{n} run{'' if n == 1 else 's'}" if n is not None else "few runs"
        evidence = (f", r {corr:.2f} over {runs_text}, too few to test" if corr is not None
                    else f" on mass and RT only ({runs_text} measured both)")
        out.append(f"{label}{of}{evidence}; library match {lib}: refuses nothing")
    return pl.Series(ION_LABEL_HEADER, out, dtype=pl.Utf8)


def background_marks(ident: pl.DataFrame) -> pl.Series:
    """Per row of ``ident``, Utf8: an accepted name's background-ion mark (the end of ``evidence_note`` from
    ``identification.background``, without its lead words), null elsewhere."""
    if "evidence_note" not in ident.columns or "accepted" not in ident.columns:
        return pl.Series(BACKGROUND_HEADER, [None] * ident.height, dtype=pl.Utf8)
    return ident.select(pl.when(pl.col("accepted").fill_null(False))
                        .then(background.background_part(pl.col("evidence_note")))
                        .alias(BACKGROUND_HEADER)).to_series()


def other_evidence(ident: pl.DataFrame) -> pl.Series:
    """Per row of ``ident``, Utf8: ``evidence_note`` without its background-ion mark (the low-cosine scores, or why a
    name was withdrawn); null where nothing else is said."""
    if "evidence_note" not in ident.columns:
        return pl.Series("evidence_note", [None] * ident.height, dtype=pl.Utf8)
    return ident.select(background.other_part(pl.col("evidence_note")).alias("evidence_note")).to_series()


BLANK_HEADER = "in the blanks?"


def with_blank_flags(ident: pl.DataFrame | None, corrected: pl.DataFrame | None) -> pl.DataFrame | None:
    """``ident`` (identifications.parquet) with ``blank_flag`` and ``blank_ratio`` of each consensus feature from
    ``corrected`` (the corrected feature matrix, ``correction.blank``); unchanged when either is missing or lacks
    the columns. A trial: three contaminants of the blanks (two phosphate esters, a benzalkonium cation) were named,
    flagged by the blank filter, and shown without a word of it."""
    if ident is None or corrected is None or "consensus_id" not in ident.columns \
            or not {"consensus_id", "blank_flag", "blank_ratio"} <= set(corrected.columns):
        return ident
    flags = corrected.select(pl.col("consensus_id").cast(pl.Utf8), "blank_flag", "blank_ratio")
    return ident.drop([c for c in ("blank_flag", "blank_ratio") if c in ident.columns]).join(
        flags, on="consensus_id", how="left")


def blank_marks(ident: pl.DataFrame) -> pl.Series:
    """Per row of ``ident`` (after ``with_blank_flags``), Utf8 named ``BLANK_HEADER``: for a feature the blank
    filter flagged, "blank ratio R (flagged)", R the samples' mean over the blanks' (``correct: blank_ratio``); null
    elsewhere or without the columns."""
    if not {"blank_flag", "blank_ratio"} <= set(ident.columns):
        return pl.Series(BLANK_HEADER, [None] * ident.height, dtype=pl.Utf8)
    return ident.select(pl.when(pl.col("blank_flag").fill_null(False)).then(
        pl.format("blank ratio {} (flagged)", pl.col("blank_ratio").round(2))).alias(BLANK_HEADER)).to_series()


def blank_paragraph(n: int) -> str:
    """The identification section's sentence on ``n`` accepted names marked by ``blank_marks`` (HTML)."""
    return (f"<p>{n} accepted feature(s) were flagged by the blank filter (column '{BLANK_HEADER}': the samples' "
            "mean intensity over the blanks', below <code>correct: blank_ratio</code>): the ion is about as abundant "
            "in the solvent blanks as in the samples, so the compound is likely a contaminant of the solvents, "
            "tubing or vials (plasticisers, surfactants, phosphate esters) or carry-over, not of the samples. The "
            "name may be right; the feature is left out of the tests and models (<code>correct: "
            "exclude_flagged</code>).</p>")


CONTAMINANT_HEADER = "common contaminant?"


def contaminant_marks(ident: pl.DataFrame) -> pl.Series:
    """Per row of ``ident`` (identifications.parquet), Utf8 named ``CONTAMINANT_HEADER``: for an accepted name whose
    formula is a common LC-MS contaminant's (``identification.contaminants``), its kind and name; null elsewhere."""
    return contaminants.contaminant_marks(ident, CONTAMINANT_HEADER)


def contaminant_paragraph(n: int) -> str:
    """The identification section's sentence on ``n`` accepted names marked by ``contaminant_marks`` (HTML)."""
    return (f"<p>{n} accepted feature(s) share their formula with a common LC-MS contaminant (column "
            f"'{CONTAMINANT_HEADER}': disinfectants such as benzalkonium, plasticisers, flame retardants, slip agents, "
            "polymer additives, polyethylene glycols and siloxanes; the kinds reviewed by Keller et al. 2008, Anal. "
            "Chim. Acta 627:71). Such ions come from solvents, tubing, vials, gloves or the lab air as well as from "
            "samples, and their spectra match the library as well as a sample compound's would: the q-value does "
            "not tell where the compound came from. Solvent blanks do (the blank filter, column "
            f"'{BLANK_HEADER}', where the study has blanks; a blank does not show what sample preparation added). "
            "The name may be right; before reading it as a compound of the samples, compare a blank or a "
            "preparation blank. Some are also sample compounds (oleamide is an endogenous lipid).</p>")


MINORITY_HEADER = "most spectra against it?"
# a name resting on fewer than half of its feature's searched spectra, of at least this many, is marked
MINORITY_MIN_SPECTRA = 4


def minority_marks(ident: pl.DataFrame) -> pl.Series:
    """Per row of ``ident`` (identifications.parquet), Utf8 named ``MINORITY_HEADER``: for an accepted name whose
    supporting spectra are fewer than half of its feature's searched spectra (``n_supporting``, ``n_spectra``; at
    least ``MINORITY_MIN_SPECTRA`` searched), "1 of 10 spectra support it"; null elsewhere. Trial AX: a name backed
    by 1 of 10 spectra (one run's, off the apex) sat on a feature that was mostly an unlisted isomer, whose 3.9-fold
    change was reported under the name; the Simes combination lets one strong spectrum carry a feature."""
    if not {"n_supporting", "n_spectra", "accepted"} <= set(ident.columns):
        return pl.Series(MINORITY_HEADER, [None] * ident.height, dtype=pl.Utf8)
    return ident.select(pl.when(pl.col("accepted").fill_null(False) & (pl.col("n_spectra") >= MINORITY_MIN_SPECTRA)
                                & (2 * pl.col("n_supporting") < pl.col("n_spectra")))
                        .then(pl.format("{} of {} spectra support it", "n_supporting", "n_spectra"))
                        .alias(MINORITY_HEADER)).to_series()


def minority_paragraph(n: int) -> str:
    """The identification section's sentence on ``n`` accepted names marked by ``minority_marks`` (HTML)."""
    return (f"<p>{n} accepted feature(s) are named on a minority of their spectra (column '{MINORITY_HEADER}': "
            "fewer than half of the feature's searched spectra support the name; the others match no library "
            "compound, or another, at this FDR). One strong spectrum can name a feature (the spectra's p-values are "
            "combined, Simes), and that spectrum may come from a compound on the feature's shoulder while the "
            "feature's apex, and so its intensities, belong to another compound (co-eluting, or an isomer the "
            "library lacks): the tests and models then report that compound's change under this name. Check where "
            "the supporting spectra lie in the peak before reading the name as the feature's.</p>")


FEATURE_MZ_HEADER = "feature m/z off?"


def feature_mz_marks(ident: pl.DataFrame) -> pl.Series:
    """Per row of ``ident`` (identifications.parquet), Utf8 named ``FEATURE_MZ_HEADER``: where the identify stage
    marked the feature's m/z (``feature_mz_note``, ``identification.featuremz``), "feature +32.1 ppm, MS/MS +1.2 ppm"
    from the named ion; null elsewhere and in tables written before the column."""
    if "feature_mz_note" not in ident.columns:
        return pl.Series(FEATURE_MZ_HEADER, [None] * ident.height, dtype=pl.Utf8)
    return ident.select(pl.when(pl.col("feature_mz_note").is_not_null()).then(pl.format(
        "feature {} ppm, MS/MS {} ppm", pl.col("feature_mz_error_ppm").round(1),
        pl.col("precursor_error_ppm").fill_null(0.0).round(1))).alias(FEATURE_MZ_HEADER)).to_series()


def feature_mz_paragraph(n: int) -> str:
    """The identification section's sentence on ``n`` accepted names marked by ``feature_mz_marks`` (HTML)."""
    return (f"<p>{n} accepted feature(s) have an m/z farther from the named ion's than their own MS/MS precursors "
            f"have (column '{FEATURE_MZ_HEADER}': the feature's and the precursors' errors against the library ion; "
            "more than <code>spectra: mz_tolerance_ppm</code> apart). The instrument's calibration moves both alike; "
            "a feature that moved alone took in another ion, most often a neighbour's isotope peak merged into its "
            "mass trace, and its MS/MS reached it through the trace's m/z bounds. The name may be right (the spectra "
            "matched), but the feature's intensities, which the tests and models use, may be partly the other ion's: "
            "check its extracted-ion chromatogram at the named ion's m/z before reporting a difference.</p>")


def mark_flags(accepted: pl.DataFrame) -> dict[tuple[str, str], pl.Series]:
    """Per kind of mark (its words for one name and for several), a Boolean Series over the rows of ``accepted``
    (accepted identifications): possible in-source fragment (``in_source_of_mz``), named at several retention times
    (``same_name_elsewhere``), grouped as another ion on mass and RT only (``ion_label_marks``), on a background ion
    (``background_marks``), resting on a minority of its feature's spectra (``minority_marks``) or on one shared
    fragment peak (``single_peak_marks``), flagged by the
    blank filter (``blank_marks``), sharing a common contaminant's formula
    (``contaminant_marks``), on a feature whose m/z strays from the named ion's (``feature_mz_marks``), whose mass
    stands apart from the study's other names (``featuremz.MASS_APART``). A missing column marks nothing."""
    none = pl.Series([False] * accepted.height, dtype=pl.Boolean)
    fragment = (accepted["in_source_of_mz"].is_not_null() if "in_source_of_mz" in accepted.columns else none)
    elsewhere = (accepted["same_name_elsewhere"].list.len().fill_null(0) > 0
                 if "same_name_elsewhere" in accepted.columns else none)
    return {("possible in-source fragment", "possible in-source fragments"): fragment,
            ("named at several retention times", "named at several retention times"): elsewhere,
            ("grouped as another ion than its match on mass and RT only",
             "grouped as another ion than their match on mass and RT only"): ion_label_marks(accepted).is_not_null(),
            ("on a background ion", "on background ions"): background_marks(accepted).is_not_null(),
            ("flagged by the blank filter (as abundant in the blanks)", "flagged by the blank filter (as abundant in "
             "the blanks)"): blank_marks(accepted).is_not_null(),
            ("on a feature whose m/z strays from the named ion's",
             "on features whose m/z strays from the named ion's"): feature_mz_marks(accepted).is_not_null(),
            ("resting on a minority of its feature's spectra", "resting on a minority of their features' spectra"):
                minority_marks(accepted).is_not_null(),
            # trial BM: a name on 1 spectrum sharing 1 peak (the wrong isomer) was left out of Main findings' count
            ("resting on one shared fragment peak", "resting on one shared fragment peak"):
                single_peak_marks(accepted).is_not_null(),
            # trial AS: the only accepted name on a human QC without blanks was a benzalkonium disinfectant
            ("sharing a common contaminant's formula", "sharing common contaminants' formulas"):
                contaminant_marks(accepted).is_not_null(),
            # trial AR: Tiamulin 7.6 ppm off at cosine 0.02, its note said so, Main findings counted no mark
            ("whose mass stands apart from the study's other names", "whose mass stands apart from the study's other "
             "names"): (accepted["evidence_note"].str.contains(MASS_APART, literal=True).fill_null(False)
                        if "evidence_note" in accepted.columns else none)}


def name_marks(identifications: pl.DataFrame | None) -> dict[str, str]:
    """Per consensus id of an accepted identification with any mark (``mark_flags``), the marks' words for one name,
    "; "-joined (read once for every outcome's table, ``with_name_marks``)."""
    if identifications is None or "accepted" not in identifications.columns:
        return {}
    accepted = identifications.filter(pl.col("accepted").fill_null(False)).unique("consensus_id", keep="first")
    flags = mark_flags(accepted)
    words = [[w[0] for w, flag in flags.items() if flag[i]] for i in range(accepted.height)]
    return {str(c): "; ".join(w) for c, w in zip(accepted["consensus_id"].to_list(), words) if w}


def with_name_marks(tested: pl.DataFrame, named: dict[str, str]) -> pl.DataFrame:
    """``tested`` (a differential table's rows) with ``_name_marks``: the marks of its feature's accepted
    identification (``named``: ``name_marks``), where it has any; unchanged when no tested feature's name carries
    one. Trial BE: a hit named on 1 spectrum in 1 sample, the same name accepted 33 s earlier on 14 (the right
    compound there), showed no mark in What differs; the identification section alone said so."""
    if not named or "consensus_id" not in tested.columns:
        return tested
    ids = tested["consensus_id"].cast(pl.Utf8)
    if not ids.is_in(list(named)).any():
        return tested
    return tested.with_columns(ids.replace_strict(named, default=None, return_dtype=pl.Utf8).alias("_name_marks"))


def ion_label_paragraph(n: int) -> str:
    """The identification section's sentence on ``n`` accepted names marked by ``ion_label_marks`` (HTML)."""
    return (f"<p>{n} accepted feature(s) were labelled by the study's adduct grouping as another ion than their "
            f"library match's (column '{ION_LABEL_HEADER}': the label, the co-eluting partner's m/z and feature, the "
            "library match's ion). Too few runs measured both to test whether their intensities co-vary "
            "(<code>correct: adduct_min_runs</code>), so the label rests on mass and retention time alone and "
            "refuses no match. If it is right, the library name is wrong: the feature is that ion of the partner's "
            "compound (an [M+H-H2O]+ is the partner's water loss in the source, an [M+Na]+ its sodium adduct), and "
            "the compound is to be looked for at the partner's m/z. A chance co-elution gives such a label too: "
            "check these by hand. A label that cannot be a reading of the match (a permanent cation such as a "
            "quaternary ammonium labelled [M+Na]+) is ignored, neither refusing nor marking the name; "
            "identifications.parquet keeps it in feature_adduct.</p>")


def background_paragraph(n: int) -> str:
    """The identification section's sentence on ``n`` accepted names marked by ``background_marks`` (HTML)."""
    share = f"{background.BACKGROUND_SHARE * 100:g} %"
    return (f"<p>{n} accepted feature(s) rest on a background ion or a broad peak: the feature's half-height width "
            f"is {share} of its run's RT span, or {background.BROAD_PEAK_RATIO:g} times the run's median peak width, "
            f"or more in half or more of its runs (column '{BACKGROUND_HEADER}': per run, the width against the "
            "run's span or median). An ion there through the run (a solvent, contaminant or bleed ion) is not a "
            "chromatographic peak, and DDA fragments it again and again: its 'spectra' and 'supporting' counts are "
            "repeated triggers of one ion, not independent evidence. In a short run (an excerpt of a few minutes) a "
            "broad peak cut by the run's ends looks the same. A broad peak may hold the named compound's narrower "
            "peak summed with a broad ion of the same m/z, so its value and fold change may not be the compound's. "
            "The name is kept (a mark is not a refusal); look at the ion's chromatogram before reporting it.</p>")


SINGLE_PEAK_HEADER = "one shared fragment peak?"


def single_peak_marks(ident: pl.DataFrame) -> pl.Series:
    """Per row of ``ident`` (identifications.parquet), Utf8: "yes" where no supporting spectrum shares more than one
    fragment peak with its library match (``matched_peaks`` 1: ``annotate: min_matched_peaks`` 1 accepts such a
    name), null elsewhere and where the column is absent (tables written before it)."""
    if "matched_peaks" not in ident.columns:
        return pl.Series(SINGLE_PEAK_HEADER, [None] * ident.height, dtype=pl.Utf8)
    return ident.select(pl.when(pl.col("matched_peaks") == 1).then(pl.lit("yes")).otherwise(None)
                        .alias(SINGLE_PEAK_HEADER)).to_series()


def single_peak_paragraph(n: int) -> str:
    """The identification section's sentence on ``n`` accepted names marked by ``single_peak_marks`` (HTML)."""
    return (f"<p>{n} accepted feature(s) rest on one shared fragment peak (column '{SINGLE_PEAK_HEADER}'): no "
            "spectrum of the feature shares more than one fragment peak with the library spectrum. The q-value "
            "prices that in (the library's calibration counts wrong candidates sharing one peak too), and such a "
            "name is never level 2, but one peak is weak evidence of structure: an immonium ion or a head-group "
            "fragment is shared by whole families (m/z 86.096 by leucine, isoleucine and their isomers; m/z 60.081 "
            "by trimethylammonium compounds). Check the spectrum and the retention time before reporting it; "
            "<code>annotate: min_matched_peaks: 2</code> refuses such names.</p>")


def mark_columns(accepted: pl.DataFrame) -> dict[str, pl.Series]:
    """The marks shown beside the names of ``accepted`` (accepted identifications), by column header, only those
    marking some row: grouped as another ion, background ion, one shared fragment peak, most spectra against it, in
    the blanks, common contaminant, feature m/z off."""
    columns = (ion_label_marks(accepted), background_marks(accepted), single_peak_marks(accepted),
               minority_marks(accepted), blank_marks(accepted), contaminant_marks(accepted), feature_mz_marks(accepted))
    return {c.name: c for c in columns if c.is_not_null().any()}


def mark_paragraphs(beside: dict[str, pl.Series]) -> list[str]:
    """The identification section's paragraph on each mark column of ``beside`` (``mark_columns``), in its order."""
    paragraphs = {ION_LABEL_HEADER: ion_label_paragraph, BACKGROUND_HEADER: background_paragraph,
                  SINGLE_PEAK_HEADER: single_peak_paragraph, MINORITY_HEADER: minority_paragraph,
                  BLANK_HEADER: blank_paragraph,
                  CONTAMINANT_HEADER: contaminant_paragraph, FEATURE_MZ_HEADER: feature_mz_paragraph}
    return [paragraphs[h](int(c.is_not_null().sum())) for h, c in beside.items() if h in paragraphs]
