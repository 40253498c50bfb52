"""What the bag-of-chemistry model looks at (ms2study.modelling.regions, reporting.regions) on a small synthetic
study with known prototypes: a compound tripled in cases must drive its region with no note; a feature whose
spectra fall on one side of a region border in cases and on the other in controls (same abundance) must be named
as placement, while a region empty in controls because its compound was fragmented in cases only is not; the
regions' contributions must add up to the model's
own scores; a bag that does not match its spectra is refused; the report cautions when noted regions carry the
model."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ms2study.core.errors import InputError
from ms2study.modelling.attribution import fit_embedding_model, model_score
from ms2study.modelling.chemistry import Prototypes, chemistry_sample, chemistry_terms
from ms2study.modelling.differential import write_table
from ms2study.modelling.featuresets import align_rows, chemical_space_feature_set
from ms2study.modelling.regions import REGION_ATTRIBUTION, _leave_one_out, region_attribution
from ms2study.reporting.regions import regions_part
from ms2study.stages.models import DEFAULT_PARAMS as MODELS_DEFAULTS

DIM, K = 8, 6
POOL = {"chemistry": {"assignment": "hard", "temperature": 0.05}, "abundance": "feature_intensity",
        "mapped_only": True}
GROUP = {"column": "group", "type": "binary", "positive_class": "case"}
# feature -> (consensus feature, home region). F1 tripled in cases (region 0); F7 sits between regions 3 and 4
# (nearer 3 in cases, 4 in controls); F9 is found in cases only, alone in region 5 (an empty region in controls);
# F10, 20x larger, lies in region 1 but in region 0 in one case run (trial AO: a linear-abundance choice named it);
# F11, 20x larger, lies in region 2 in 3 of 8 case runs and 1 of 8 control runs, else in region 1 (a border ion
# spread over regions in both classes: a class gap of 0.25); F12a and F12b are two features of one run linked to
# one consensus feature C12; the others are background
FEATURES = {"F1": ("C1", 0), "F2": ("C2", 0), "F3": ("C3", 1), "F4": ("C4", 1), "F5": ("C5", 2), "F6": ("C6", 2),
            "F7": ("C7", 3), "F8": ("C8", 4), "F9": ("C9", 5), "F10": ("C10", 1), "F11": ("C11", 1),
            "F12a": ("C12", 1), "F12b": ("C12", 1)}
CONSENSUS = sorted({c for c, _ in FEATURES.values()}, key=lambda c: int(c[1:]))


def _region(f: str, home: int, i: int, case: bool) -> int:
    if f == "F10" and i == 0:
        return 0
    if f == "F11" and i in (0, 2, 4, 1):  # runs 0, 2, 4 are cases, run 1 a control
        return 2
    return home


def make_study(seed: int = 0, n: int = 16) -> dict:
    rng = np.random.default_rng(seed)
    centers = np.eye(K, DIM, dtype=np.float32)
    prototypes = Prototypes(centers, "test", None, "test", 100, 0)
    ids = [f"S{i:02d}" for i in range(1, n + 1)]
    group = ["case" if i % 2 == 0 else "control" for i in range(n)]
    base = {f: float(np.exp(rng.normal(12.0, 0.3))) for f in FEATURES}
    base["F7"] = float(np.exp(14.0))  # the border feature dominates both its neighbouring regions
    base["F10"] = base["F11"] = float(np.exp(15.0))
    tables, pairs = {}, []
    for i, s in enumerate(ids):
        case = group[i] == "case"
        rows, spectra, feats = [], [], []
        for f, (consensus, home) in FEATURES.items():
            if f == "F9" and not case:
                continue
            abundance = base[f] * float(np.exp(rng.normal(0.0, 0.15))) * (3.0 if f == "F1" and case else 1.0)
            e = centers[_region(f, home, i, case)].astype(np.float64) + 0.05 * rng.normal(size=DIM)
            if f == "F7":
                e = 0.5 * (centers[3] + centers[4]) + (0.1 if case else -0.1) * (centers[3] - centers[4])
            rows.append({"spectrum_id": f"{s}:s{f}", "sample_id": s, "feature_id": f"{s}:{f}",
                         "embedding": (e / np.linalg.norm(e)).astype(np.float32).tolist()})
            spectra.append({"spectrum_id": f"{s}:s{f}", "precursor_intensity": abundance / 10})
            feats.append({"feature_id": f"{s}:{f}", "intensity": abundance})
            pairs.append((consensus, s, f"{s}:{f}"))
        tables[s] = (pl.DataFrame(rows, schema_overrides={"embedding": pl.List(pl.Float32)}), pl.DataFrame(spectra),
                     pl.DataFrame(feats))
    bags = pl.concat([chemistry_sample(t[0], t[1], s, prototypes, POOL, t[2]) for s, t in tables.items()])
    links = pl.DataFrame(pairs, schema=["consensus_id", "sample_id", "feature_id"], orient="row")
    matrix = pl.DataFrame({"consensus_id": CONSENSUS, "mz": [100.0 + int(c[1:]) for c in CONSENSUS],
                           "rt_s": [10.0 * int(c[1:]) for c in CONSENSUS]})
    ident = pl.DataFrame({"consensus_id": ["C1"], "name": ["planted"], "inchikey": ["AAAA"], "msi_level": [2],
                          "q_value": [0.001], "accepted": [True]})
    samples = pl.DataFrame({"sample_id": ids, "group": group})
    terms = {s: chemistry_terms(t[0], t[1], s, prototypes, POOL, t[2])[:3] for s, t in tables.items()}
    return {"samples": samples, "bags": bags, "terms": terms, "links": links, "matrix": matrix, "ident": ident}


def summary(estimator: str = "elastic_net", chosen: dict | None = None) -> dict:
    entry = {"regularisation_chosen": chosen} if chosen else {}
    return {"status": "done", "feature_sets": {"chemical_space": entry},
            "params": {**MODELS_DEFAULTS, "estimator": estimator}}


def run(study: dict, model_summary: dict, spec: dict = GROUP):
    return region_attribution(study["samples"], spec, model_summary, study["bags"], study["terms"], study["links"],
                              study["matrix"], study["ident"])


@pytest.mark.parametrize("seed", [0, 1])
def test_regions_name_their_drivers_and_the_placement_notes(seed):
    study = make_study(seed)
    table, info = run(study, summary(estimator="linear", chosen={"1": 3}))
    assert info["status"] == "done" and list(table.columns) == list(REGION_ATTRIBUTION)
    assert table.height == K and sorted(table["rank"].to_list()) == list(range(1, K + 1))
    rows = {r["region"]: r for r in table.iter_rows(named=True)}
    planted = rows[0]  # not F10, placed there in one case run at 20x the planted compound's abundance (trial AO)
    assert planted["driver_id"] == "C1" and planted["driver_name"] == "planted" and planted["note"] is None
    assert planted["driver_msi_level"] == 2  # the name is never shown without its level (trial AR: bare L-Norleucine)
    assert planted["log2_fold"] > 0.5 and planted["log2_fold_without_driver"] < 0.6 * planted["log2_fold"]
    assert planted["driver_in_region_positive"] == planted["driver_in_region_reference"] == 1.0
    assert (planted["driver_pooled_positive"], planted["driver_pooled_reference"]) == (8, 8)
    assert "C10 (m/z 110.0000, RT 100 s): log2 fold without it" in planted["features"]
    assert "planted (level 2, m/z 101.0000, RT 10 s): log2 fold without it" in planted["features"]
    assert "in this region in 1 of the 16 runs with its MS/MS" in planted["features"]
    for region, (positive, reference) in {3: (1.0, 0.0), 4: (0.0, 1.0)}.items():
        border = rows[region]
        assert border["driver_id"] == "C7" and "region border" in border["note"]
        assert (border["driver_in_region_positive"], border["driver_in_region_reference"]) == (positive, reference)
    assert rows[3]["n_empty_reference"] == 8 and rows[4]["n_empty_positive"] == 0  # C7 alone in region 3
    spread = rows[2]  # C11: in the region in 3 of 8 case runs and 1 of 8 control runs, a class gap of 0.25
    assert spread["driver_id"] == "C11" and spread["note"].startswith("C11 (m/z 111.0000, RT 110 s), which makes this region's difference")
    assert "38% of the case runs and 12% of the others'" in spread["note"]
    # region 1 loses C11 to region 2 in 4 runs: C11 is its main feature, though taking under a third of its log2
    # fold (trial AO: a main feature in its region in 0 % / 25 % of the runs carried no note)
    left = rows[1]
    assert left["driver_id"] == "C11" and abs(left["log2_fold_without_driver"]) > 0.6 * abs(left["log2_fold"])
    assert "62% of the case runs and 88% of the others'" in left["note"]
    empty = rows[5]  # a compound fragmented in cases only: an empty region in controls, but no placement question
    assert (empty["n_empty_positive"], empty["n_empty_reference"]) == (0, 8) and empty["note"] is None
    assert (empty["driver_id"], empty["driver_pooled_positive"], empty["driver_pooled_reference"]) == ("C9", 8, 0)
    assert set(info["noted_regions"]) <= {1, 2, 3, 4} and info["noted_share"] > 0.25


def test_features_of_one_run_linked_to_one_consensus_feature_count_as_one_run():
    """Trial AO: "runs with its MS/MS 7 / 9" with 8 control runs."""
    study = make_study(0)
    ids = study["samples"]["sample_id"].to_list()
    y = np.array([1 if g == "case" else 0 for g in study["samples"]["group"]])
    link_map = {(s, f): c for c, s, f in study["links"].iter_rows()}
    _, consensus, _, member, pooled, _ = _leave_one_out(ids, y, study["terms"], link_map, K)
    c12 = consensus.index("C12")
    assert pooled[c12].tolist() == [8.0, 8.0] and member[c12, 1].tolist() == [8.0, 8.0]


def test_region_contributions_add_up_to_the_models_scores():
    study = make_study(2)
    table, info = run(study, summary(estimator="linear", chosen={"0.1": 2}))
    assert info["max_split_error"] < 1e-6
    ids = study["samples"]["sample_id"].to_list()
    X, _, _ = align_rows(chemical_space_feature_set(study["bags"]), ids, "chemical_space")
    y = np.array([1 if g == "case" else 0 for g in study["samples"]["group"]])
    pre, model, _ = fit_embedding_model(X, np.empty((len(ids), 0)), y, "binary",
                                        summary("linear")["params"], 0.1, "chemical_space")
    scores = model_score(model, pre.transform(X), "binary")
    assert table["contribution"].sum() == pytest.approx(scores[y == 1].mean() - scores[y == 0].mean(), abs=1e-8)


def test_a_bag_that_does_not_match_its_spectra_is_refused():
    study = make_study(0)
    bags = study["bags"].with_columns(pl.when(pl.col("sample_id") == "S03").then(
        pl.col("abundance").list.eval(pl.element() + 1.0)).otherwise(pl.col("abundance")).alias("abundance"))
    with pytest.raises(InputError, match="differs from the one recomputed") as error:
        run({**study, "bags": bags}, summary(estimator="linear", chosen={"1": 1}))
    assert "S03" in str(error.value)


def test_outcomes_that_cannot_be_explained_say_why():
    study = make_study(0)
    samples = study["samples"].with_columns(pl.Series("dose", np.arange(16, dtype=float)))
    _, info = run({**study, "samples": samples}, summary(), {"column": "dose", "type": "continuous"})
    assert info["status"] == "skipped" and "two-class" in info["reason"]
    _, info = run(study, summary(estimator="random_forest"))
    assert info["status"] == "skipped" and "not linear" in info["reason"]
    _, info = run(study, {**summary(), "feature_sets": {"embedding": {}}})
    assert info["status"] == "skipped" and "did not model the 'chemical_space' set" in info["reason"]


def test_report_part_cautions_when_noted_regions_carry_the_model(tmp_path):
    study = make_study(0)
    table, info = run(study, summary(estimator="linear", chosen={"1": 3}))
    path = tmp_path / "group.parquet"
    write_table(table, path, info)
    warnings: list[str] = []
    html = regions_part(path, "group", warnings)
    assert "What the bag-of-chemistry model looks at" in html and "planted (level 2)" in html
    assert "region border" in html
    assert "log2 fold without it" in html
    assert "in region (case / control)" in html
    assert len(warnings) == 1 and "placed" in warnings[0] and getattr(warnings[0], "kind", "") == "doubt"
    warnings.clear()
    html = regions_part(path, "group", warnings, caveat="the chemical_space model of group is not shown to beat "
                                                        "chance: p 0.4")
    assert "not evidence" in html and warnings == []  # a model without signal: its regions are no finding
    quiet = table.with_columns(pl.lit(None, dtype=pl.Utf8).alias("note"))
    write_table(quiet, path, {**info, "noted_regions": [], "noted_share": 0.0})
    assert regions_part(path, "group", warnings) and warnings == []


def test_regions_an_elastic_net_drops_contribute_nothing():
    study = make_study(0)
    table, info = run(study, summary(chosen={"lambda_ratio=0.5, l1_ratio=0.5": 3}))
    unused = table.filter(pl.col("contribution") == 0)
    assert unused.height == table.height - info["regions_used"] > 0 and unused["direction"].null_count() == unused.height
    kept = set(table["region"].to_list()) - set(unused["region"].to_list())
    assert kept and kept <= {0, 3, 4, 5}  # the regions the planted, the border and the cases-only compounds make


def test_a_model_that_passes_only_before_the_choice_among_sets_is_adjusted_for_is_no_evidence(tmp_path):
    """Trial AO: Main findings called the chemical_space model "suggestive only" (adjusted p 0.098) while its region
    table stood as evidence (raw p 0.0099)."""
    import json

    from ms2study.reporting.collect import OutcomeFiles
    from ms2study.reporting.outcomes import attribution_caveats

    entry = {"metric": "roc_auc", "value": 1.0, "ci_low": 0.76, "ci_high": 1.0, "permutation_p": 0.0099,
             "permutation_p_adjusted": 0.098}
    model = {"outcome": "group", "status": "done", "p_adjustment": {"permutations": 100},
             "feature_sets": {"chemical_space": entry, "features": {**entry, "permutation_p_adjusted": 0.04},
                              "embedding": {**entry, "value": 0.6, "ci_low": 0.3, "permutation_p": 0.4}}}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(model))
    caveats = attribution_caveats([OutcomeFiles(path)], "chemical_space")
    assert "not once the choice among 3 feature sets is adjusted for (adjusted p 0.098): suggestive only" in \
        caveats["group"]
    assert "group" not in attribution_caveats([OutcomeFiles(path)], "features")  # adjusted p 0.04: evidence
    assert "not shown to beat chance" in attribution_caveats([OutcomeFiles(path)], "embedding")["group"]
