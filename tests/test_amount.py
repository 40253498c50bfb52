"""A study sample with far less (or more) material than the others is named, beside the findings and the shift.

Trial N (session 37): a re-injection with a tenth of the material (826 features against ~2,380, TIC 17x lower)
passed every check unnamed: the outlier rule removes each run's overall level first, the failed-run rule needs
under 20 % of the features, and the normalisation measured its factor (0.10) but stored only the range. Its
undetected features, filled as below detection, made "64 % of the features lower in case" in Main findings,
where no shift was planted, and one false hit."""
from __future__ import annotations

import numpy as np
from test_correct import make_study, with_values

from ms2study.correction.matrix import correct_matrix
from ms2study.reporting.html import QUALITY, kind_of
from ms2study.reporting.shift import AMOUNT_RATIO, amount_outliers, shift_sentence


def test_the_runs_factors_are_recorded_and_a_tenth_of_the_material_is_named() -> None:
    study = make_study(n_batches=1, per_batch=12, qc_every=0, n_blanks=0, seed=3)
    values = study["values"].copy()
    runs = study["roles"]["sample_id"].to_list()
    dilute = runs[5]
    j = runs.index(dilute)
    values[:, j] *= 0.1
    values[np.argsort(values[:, j])[: values.shape[0] // 2], j] = np.nan  # the weaker half falls below detection
    record = correct_matrix(with_values(study, values), study["roles"], {"adducts": False}).report
    factors = record["run_factors"]
    assert set(factors) == set(runs) and 0.05 < factors[dilute] < 0.2  # the selection of the detected half
    assert all(0.6 < f < 1.6 for s, f in factors.items() if s != dilute)
    assert amount_outliers(record) == [(dilute, factors[dilute])]
    summary = {"global_shift": {"share_up": 0.36, "p_value": 0.02, "n_features": 200, "median_effect": -0.19},
               "type": "binary", "positive_class": "case"}
    said = shift_sentence(summary, record)
    assert f"run(s) {dilute} ({factors[dilute]:.2g} of the typical sample's amount) hold far less or more " \
           "material than the others: their undetected features are filled as below detection, which alone can " \
           "make such a shift" in said
    assert "typical sample's amount" not in shift_sentence(summary, {**record, "run_factors": {
        s: f for s, f in factors.items() if s != dilute}})
    assert AMOUNT_RATIO == 3.0 and amount_outliers({"run_factors": {"A": 0.34, "B": 3.2, "C": None}}) == [("B", 3.2)]


def test_the_batch_section_cautions_beside_the_findings(tmp_path) -> None:
    import json

    import polars as pl

    from ms2study.reporting.batch import batch_section

    sheet = pl.DataFrame({"sample_id": [f"S{i}" for i in range(6)], "file": [f"S{i}.mzML" for i in range(6)]})
    path = tmp_path / "correction.json"
    path.write_text(json.dumps({"drift_method": "median", "note": "", "n_qc": 0, "n_samples": 6,
                                "run_factors": {"S0": 1.0, "S1": 0.98, "S2": 0.09, "S3": 1.1, "S4": 1.0, "S5": 0.95}}))
    warnings: list[str] = []
    batch_section(path, None, None, sheet, {}, warnings)
    (said,) = [w for w in warnings if "material" in w]
    assert kind_of(said) == QUALITY and said.label == "run with far less material"
    assert said.startswith("run(s) S2 (0.09 of the typical sample's amount) hold far less or more material")
    assert said.concerns == ("differential", "models")
