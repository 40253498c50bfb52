"""Do the paired (multilevel) outcome models hold their level, and what do they find? On synthetic before/after
studies with known truth (``ms2study.modelling.multilevel``).

Each study: ``subjects`` subjects measured twice (before, after), ``features`` log intensities per run: a feature
baseline (sd 1), a subject offset per feature (sd ``subject_sd``), run noise (sd ``within_sd``), and ``changed``
features raised by ``effect`` (natural log) after. Null studies have no effect. Per setting the models stage's code
models each study twice: paired (the sheet's subject_id: within subjects, CV by subject, permutations within
subjects) and as if the runs were independent samples (no subject_id). Written per setting and mode: the share of
studies whose AUC interval lies above 0.5, the share with permutation p <= 0.05, the share with both (the report's
"separates the classes"), and the mean AUC. Usage:

  PYTHONPATH=workflow python benchmarks/paired_models.py --out R.json [--studies 40] [--quick] [--only null]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_record

from ms2study.modelling.evaluate import model_outcome
from ms2study.modelling.featuresets import feature_matrix_feature_set
from ms2study.modelling.multilevel import paired_model_data
from ms2study.modelling.subjects import subject_groups
from ms2study.stages.models import merge_params

OUTCOME = {"column": "time", "type": "binary", "positive_class": "after"}
SETTINGS = [  # (name, subjects, effect)
    ("null, 12 subjects", 12, 0.0),
    ("null, 24 subjects", 24, 0.0),
    ("effect 0.1, 12 subjects", 12, 0.1),
    ("effect 0.2, 12 subjects", 12, 0.2),
    ("effect 0.4, 12 subjects", 12, 0.4),
]


def paired_study(rng: np.random.Generator, subjects: int, effect: float, features: int = 300, changed: int = 20,
                 subject_sd: float = 0.5, within_sd: float = 0.15) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(sample sheet with time and subject_id, wide feature matrix: consensus_id then one intensity column per run)."""
    subject = np.repeat(np.arange(subjects), 2)
    after = np.tile([0, 1], subjects)
    logs = (12 + rng.normal(0, 1, (features, 1)) + rng.normal(0, subject_sd, (features, subjects))[:, subject]
            + rng.normal(0, within_sd, (features, 2 * subjects)))
    logs[:changed] += effect * after
    ids = [f"R{i:02d}" for i in range(2 * subjects)]
    matrix = pl.DataFrame({"consensus_id": [f"C{j:03d}" for j in range(features)],
                           **{s: np.exp(logs[:, k]) for k, s in enumerate(ids)}})
    sheet = pl.DataFrame({"sample_id": ids, "time": np.where(after == 1, "after", "before").tolist(),
                          "subject_id": [f"P{k:02d}" for k in subject]})
    return sheet, matrix


def model(sheet: pl.DataFrame, matrix: pl.DataFrame, paired: bool, params: dict) -> dict:
    """The features set's summary entry, modelled paired (multilevel) or with the runs as independent samples."""
    sets = {"features": feature_matrix_feature_set(matrix, sheet["sample_id"].to_list())}
    blocks = None
    if paired:
        sheet, sets, blocks, _ = paired_model_data(sheet, sets, "time", subject_groups(sheet))
    else:
        sheet = sheet.drop("subject_id")
    return model_outcome(sheet, sets, OUTCOME, params, blocks=blocks)["summary"]["feature_sets"]["features"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--studies", type=int, default=40, help="studies per setting")
    parser.add_argument("--permutations", type=int, default=99)
    parser.add_argument("--quick", action="store_true", help="8 studies per setting, 19 permutations")
    parser.add_argument("--only", default=None, help="run the settings whose name holds this text (e.g. null)")
    args = parser.parse_args()
    studies, permutations = (8, 19) if args.quick else (args.studies, args.permutations)
    params = merge_params({"feature_sets": ["features"], "n_permutations": permutations, "outer_repeats": 2,
                           "n_bootstrap": 500, "permutation_stop_after": 0})
    started = time.perf_counter()
    rows = []
    for s, (name, subjects, effect) in enumerate(SETTINGS):
        if args.only and args.only not in name:
            continue
        for mode in ("paired", "runs as independent samples"):
            entries = [model(*paired_study(np.random.default_rng(1000 * s + i), subjects, effect),
                             mode == "paired", params) for i in range(studies)]
            above = np.array([e["ci_low"] > 0.5 for e in entries])
            small_p = np.array([e["permutation_p"] <= 0.05 for e in entries])
            rows.append({"setting": name, "subjects": subjects, "effect": effect, "mode": mode, "studies": studies,
                         "share_interval_above_0.5": float(above.mean()), "share_p_le_0.05": float(small_p.mean()),
                         "share_both": float((above & small_p).mean()),
                         "mean_auc": float(np.mean([e["value"] for e in entries])),
                         "p_values": [e["permutation_p"] for e in entries]})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "p_values"}), flush=True)
    result = {"benchmark": "paired_models", "permutations": permutations, "settings": rows,
              "seconds": round(time.perf_counter() - started, 1), "machine": machine_record()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
