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
from ms2study.modelling.attribution import _decision, fit_embedding_model
from ms2study.modelling.chemistry import Prototypes, chemistry_sample, chemistry_terms
from ms2study.modelling.differential import write_table
from ms2study.modelling.featuresets import align_rows, chemical_space_feature_set
from ms2study.modelling.regions import REGION_ATTRIBUTION, region_attribution
from ms2study.reporting.regions import regions_part
from ms2study.stages.models import DEFAULT_PARAMS as MODELS_DEFAULTS

DIM, K = 8, 6
POOL = {"chemistry": {"assignment": "hard", "temperature": 0.05}, "abundance": "feature_intensity",
        "mapped_only": True}
GROUP = {"column": "group", "type": "binary", "positive_class": "case"}
# feature -> home region; F1 tripled in cases (region 0); F7 sits between regions 3 and 4 (placement); F9 is found
# in cases only, alone in region 5 (an empty region in controls); the others are background
HOME = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2, 7: 3, 8: 4, 9: 5}


def make_study(seed: int = 0, n: int = 16) -> dict:
    rng = np.random.default_rng(seed)
    centers = np.eye(K, DIM, dtype=np.float32)
    prototypes = Prototypes(centers, "test", None, "test", 100, 0)
    ids = [f"S{i:02d}" for i in range(1, n + 1)]
    group = ["case" if i % 2 == 0 else "control" for i in range(n)]
    base = {f: float(np.exp(rng.normal(12.0, 0.3))) for f in HOME}
    base[7] = float(np.exp(14.0))  # the border feature dominates both its neighbouring regions
    tables = {}
    for i, s in enumerate(ids):
        case = group[i] == "case"
        rows, spectra, feats = [], [], []
        for f, region in HOME.items():
            if f == 9 and not case:
                continue
            abundance = base[f] * float(np.exp(rng.normal(0.0, 0.15))) * (3.0 if f == 1 and case else 1.0)
            e = centers[region].astype(np.float64) + 0.05 * rng.normal(size=DIM)
            if f == 7:  # between regions 3 and 4: nearer 3 in cases, nearer 4 in controls
                e = 0.5 * (centers[3] + centers[4]) + (0.1 if case else -0.1) * (centers[3] - centers[4])
            rows.append({"spectrum_id": f"{s}:s{f}", "sample_id": s, "feature_id": f"{s}:F{f}",
                         "embedding": (e / np.linalg.norm(e)).astype(np.float32).tolist()})
            spectra.append({"spectrum_id": f"{s}:s{f}", "precursor_intensity": abundance / 10})
            feats.append({"feature_id": f"{s}:F{f}", "intensity": abundance})
        tables[s] = (pl.DataFrame(rows, schema_overrides={"embedding": pl.List(pl.Float32)}), pl.DataFrame(spectra),
                     pl.DataFrame(feats))
    bags = pl.concat([chemistry_sample(t[0], t[1], s, prototypes, POOL, t[2]) for s, t in tables.items()])
    pairs = [(s, f) for i, s in enumerate(ids) for f in HOME if f != 9 or group[i] == "case"]
    links = pl.DataFrame({"consensus_id": [f"C{f}" for _, f in pairs], "sample_id": [s for s, _ in pairs],
                          "feature_id": [f"{s}:F{f}" for s, f in pairs]})
    matrix = pl.DataFrame({"consensus_id": [f"C{f}" for f in HOME], "mz": [100.0 + f for f in HOME],
                           "rt_s": [10.0 * f for f in HOME]})
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
def test_regions_name_their_drivers_and_the_placement_and_empty_notes(seed):
    study = make_study(seed)
    table, info = run(study, summary(estimator="linear", chosen={"1": 3}))
    assert info["status"] == "done" and list(table.columns) == list(REGION_ATTRIBUTION)
    assert table.height == K and sorted(table["rank"].to_list()) == list(range(1, K + 1))
    rows = {r["region"]: r for r in table.iter_rows(named=True)}
    planted = rows[0]
    assert planted["driver_id"] == "C1" and planted["driver_name"] == "planted" and planted["note"] is None
    assert planted["driver_share"] > 0.9 and planted["log2_fold"] > 0.5
    assert planted["driver_in_region_positive"] == planted["driver_in_region_reference"] == 1.0
    for region, (positive, reference) in {3: (1.0, 0.0), 4: (0.0, 1.0)}.items():
        border = rows[region]
        assert border["driver_id"] == "C7" and "region border" in border["note"]
        assert (border["driver_in_region_positive"], border["driver_in_region_reference"]) == (positive, reference)
    assert rows[3]["n_empty_reference"] == 8 and rows[4]["n_empty_positive"] == 0  # C7 alone in region 3
    empty = rows[5]  # a compound fragmented in cases only: an empty region in controls, but no placement question
    assert (empty["n_empty_positive"], empty["n_empty_reference"]) == (0, 8) and empty["note"] is None
    assert (empty["driver_id"], empty["driver_pooled_positive"], empty["driver_pooled_reference"]) == ("C9", 8, 0)
    assert (planted["driver_pooled_positive"], planted["driver_pooled_reference"]) == (8, 8)
    for quiet in (1, 2):  # background regions: no note
        assert rows[quiet]["note"] is None and rows[quiet]["n_empty_positive"] == rows[quiet]["n_empty_reference"] == 0
    assert set(info["noted_regions"]) <= {3, 4} and info["noted_share"] > 0.25


def test_region_contributions_add_up_to_the_models_scores():
    study = make_study(2)
    table, info = run(study, summary(estimator="linear", chosen={"0.1": 2}))
    assert info["max_split_error"] < 1e-6
    ids = study["samples"]["sample_id"].to_list()
    X, _, _ = align_rows(chemical_space_feature_set(study["bags"]), ids, "chemical_space")
    y = np.array([1 if g == "case" else 0 for g in study["samples"]["group"]])
    pre, model, _ = fit_embedding_model(X, np.empty((len(ids), 0)), y, "binary",
                                        summary("linear")["params"], 0.1, "chemical_space")
    scores = _decision(model, pre.transform(X), "binary")
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
    assert "What the bag-of-chemistry model looks at" in html and "planted" in html and "region border" in html
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
    assert set(unused["region"].to_list()) == {1, 2}  # the background regions; the four with a difference are kept
