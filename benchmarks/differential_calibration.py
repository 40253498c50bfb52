"""Are the differential analysis's p- and q-values honest on real data, and what does the moderated t-test gain?

Real studies (``../shared/data/outcomes``: sacurine, 109 metabolites x 183 urine samples, stored as log10; ST000291,
1,541 LC-MS features x 45 urine samples) give real intensity distributions, missing values and feature-to-feature
variance differences. From each, random subsets of n samples per group are drawn (seeded) and prepared as the
pipeline prepares them: probabilistic quotient normalisation (the correct stage's default without QCs,
``correction.normalise.median_normalise``), then the differential stage itself (``differential_analysis``: log2,
features detected in at least half the samples of one group (Bijlsma 2006's modified 80 % rule), half-minimum
fill) with ``test="welch"``, with the default
``test="moderated"`` (limma-trend moderated t for features detected in every sample, its p-values from a
permutation null pooled over features; Welch for the others) and with the moderated t's p-values from the t
distribution (``moderated_tdist``, permutations 0; the variant that was rejected):

- null: the groups are a random split, so every rejection is false: the share of features with p < 0.05 (should be
  about 0.05) and the share of draws with any q < 0.05 (under a complete null BH controls this at about 0.05);
- spike-in: ``n_spiked`` random features get a fold change in the second group (x ``fold``); recall at q < 0.05
  and the false-discovery proportion among the other features at q < 0.05 (should stay below 0.05 on average).

Class enrichment (``class_enrichment`` in the result; sacurine, whose 109 metabolites carry chemical classes): the
same random splits, the classes tested by ``modelling.enrichment.class_enrichment`` with their p-values from label
permutations (the product's default), from Fisher's chi-square (its fallback without sample values) and from the
Kolmogorov-Smirnov distribution of the table's p-values (ChemRICH's); both of the latter assume a class's compounds
independent: under the null the share of classes at p < 0.05 and of splits with any class at
q < 0.05; with one class of 6-20 compounds raised ``--class-fold`` times in one group, the share of splits that
find it (q < 0.05) and the share with a class at q < 0.05 that holds none of its compounds. The study-wide shift
of the differential summary (``global_shift``: the median log2 fold change over the tested features against label
permutations) on the same splits: its share at p < 0.05 on the null split after normalisation
(``global_shift_null_p05``, as with ``correct: normalise_after_drift: pqn``) and without it
(``global_shift_raw_null_p05``, as after QC-RLSC alone: the samples keep their dilution, random over the split), and
the share at p < 0.05 when every compound of the second group's samples is ``SHIFT`` times higher without
normalisation (``global_shift_raw_shift_found``: a dilution lined up with the groups, what it is there to catch).

Covariates (``--covariates``, sacurine with its samples' ages): a binary outcome with covariates is tested as the
class coefficient of a linear model beside them (``modelling.differential``). On confounded splits (the second
group drawn older: ``covariate_draw``) the metabolites do not depend on the group beyond age, so under the adjusted
test the shares at p < 0.05 should stay near 0.05 and BH near its level, while the unadjusted test calls every
age-related metabolite different; the class enrichment likewise; and a spike-in of 10 features x 2 measures what
the adjustment costs in recall.

``--demo DIR`` adds the issue's demo targets on a finished demo run (``make demo``): the share of the planted
class's identified compounds at q < 0.05 in the planted direction, per test, and the number of 20 balanced label
permutations in which any class reaches q < 0.05 in the class enrichment.

Usage: python benchmarks/differential_calibration.py --out result.json [--draws 200] [--permutations 50]
       [--data ../shared/data] [--demo demo] [--class-draws 200] [--class-fold 2] [--class-only]
       python benchmarks/differential_calibration.py --covariates --out result.json [--covariate-draws 100]
       [--covariate-sizes 10 20 40]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from ms2study.correction.normalise import median_normalise  # noqa: E402
from ms2study.modelling.differential import differential_analysis, differential_with_values  # noqa: E402
from ms2study.modelling.enrichment import class_enrichment, class_paths, global_shift  # noqa: E402
from ms2study.modelling.univariate import bh_q_values, fill_missing  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ARMS = {"welch": ("welch", 0), "moderated": ("moderated", None), "moderated_tdist": ("moderated", 0)}
BINARY = {"column": "group", "type": "binary", "positive_class": "b"}
SHIFT = 1.5  # the dilution lined up with the groups that global_shift must find (every compound x 1.5)


def load_studies(data: Path) -> dict[str, np.ndarray]:
    """Feature x sample intensity matrices (raw scale, NaN = missing) of the real studies found under ``data``."""
    out = {}
    sac = data / "outcomes" / "sacurine" / "sacurine_dataMatrix.tsv"
    if sac.exists():
        df = pl.read_csv(sac, separator="\t", null_values=["NA", ""])
        # stored as log10 intensities (osmolality-normalised; see its PROVENANCE.md): back to the raw scale
        out["sacurine"] = 10.0 ** df.drop(df.columns[0]).cast(pl.Float64).to_numpy()
    st = data / "outcomes" / "st000291" / "features.csv"
    if st.exists():
        # written by R's write.table: the header names the 45 samples, each row starts with the feature's row name
        df = pl.read_csv(st, separator=";", has_header=False, skip_rows=1, infer_schema_length=0)
        values = df.select(pl.all().str.strip_chars().cast(pl.Float64, strict=False)).to_numpy()
        out["st000291"] = values[:, 1:]
    return out


def prepared(raw: np.ndarray) -> np.ndarray:
    """log2, features detected in at least half of the samples, half-minimum fill (as the pipeline does)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        log2 = np.where(raw > 0, np.log2(np.where(raw > 0, raw, 1.0)), np.nan)
    values, keep = fill_missing(log2, "half_minimum", 0.5)
    return values[keep]


def as_study(raw: np.ndarray, group: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A feature matrix (features x samples, raw scale, NaN = not detected) and its sheet as the stages read them."""
    ids = [f"S{j:03d}" for j in range(raw.shape[1])]
    matrix = pl.DataFrame({"consensus_id": [f"C{i:05d}" for i in range(raw.shape[0])],
                           **{s: raw[:, j] for j, s in enumerate(ids)}})
    matrix = matrix.with_columns([pl.col(s).fill_nan(None) for s in ids])
    return matrix, pl.DataFrame({"sample_id": ids, "group": np.where(group, "b", "a").tolist()})


def spiked_split(raw: np.ndarray, group: np.ndarray, spike: bool, rng: np.random.Generator, n_spiked: int,
                 fold: float) -> tuple[np.ndarray, pl.DataFrame, pl.DataFrame]:
    """(spiked features, matrix, sheet) of one split (``raw``: features x samples, raw scale): with ``spike``,
    ``n_spiked`` random features x ``fold`` in the second group; then PQN, as the pipeline without QCs."""
    x = raw.copy()
    spiked = np.zeros(x.shape[0], dtype=bool)
    if spike:
        spiked[rng.choice(x.shape[0], n_spiked, replace=False)] = True
        x[np.ix_(spiked, group)] *= fold
    x = median_normalise(np.where(x > 0, x, np.nan), np.ones(x.shape[1], dtype=bool))[0]
    return (spiked, *as_study(x, group))


def one_draw(matrix: np.ndarray, n: int, rng: np.random.Generator, n_spiked: int, fold: float,
             permutations: int) -> dict:
    cols = rng.choice(matrix.shape[1], 2 * n, replace=False)
    raw = matrix[:, cols].copy()
    group = np.repeat([False, True], n)
    out = {}
    for scenario in ("null", "spike"):
        spiked, frame, sheet = spiked_split(raw, group, scenario == "spike", rng, n_spiked, fold)
        for test, (name, arm_permutations) in ARMS.items():
            table, _ = differential_analysis(frame, sheet, BINARY, test=name, seed=int(rng.integers(1 << 30)),
                                             n_permutations=permutations if arm_permutations is None else 0)
            table = table.sort("consensus_id").filter(pl.col("tested"))
            rows = np.array([int(c[1:]) for c in table["consensus_id"]])
            p, q = table["p_value"].to_numpy(), table["q_value"].to_numpy()
            hit, truth = q < 0.05, spiked[rows]
            if scenario == "null":
                out[f"{test}_null_p05"] = float(np.mean(p < 0.05))
                out[f"{test}_null_any_q05"] = bool(hit.any())
            else:
                out[f"{test}_recall"] = float(hit[truth].mean()) if truth.any() else float("nan")
                out[f"{test}_fdp"] = float(hit[~truth].sum() / max(hit.sum(), 1))
    return out


def demo_targets(demo: Path, permutations: int = 20, seed: int = 0) -> dict:
    """The issue's targets on a finished demo run: planted-class compounds at q < 0.05 in the planted direction
    (per test), and the balanced label permutations in which any class reaches q < 0.05 (moderated test)."""
    study = demo / "results" / "study"
    truth = json.loads((demo / "simulation.json").read_text())
    planted = truth["planted_class"]
    matrix = pl.read_parquet(study / "feature_matrix_corrected.parquet")
    sheet = pl.read_csv(study / "samples.tsv", separator="\t", infer_schema_length=0)
    identifications = pl.read_parquet(study / "identifications.parquet")
    outcome = {"column": "group", "type": "binary", "positive_class": "case"}
    result: dict = {"planted_class": planted, "fold_change": truth["fold_change"], "n_samples": truth["n_samples"]}
    for test in ("welch", "moderated"):
        table, _, values = differential_with_values(matrix, sheet, outcome, identifications, test=test)
        members = table.filter(pl.col("compound_class") == planted)
        found = members.filter((pl.col("q_value") < 0.05) & (pl.col("log2_fold_change") > 0))
        enrichment, _ = class_enrichment(table, values=values)
        result[test] = {"planted_identified": members.height, "planted_found": found.height,
                        "planted_share": round(found.height / max(members.height, 1), 3),
                        "other_features_q05": int(((table["q_value"] < 0.05)
                                                   & (table["compound_class"] != planted).fill_null(True)).sum()),
                        "top_class": enrichment["class_name"][0] if enrichment.height else None,
                        "top_class_q": float(enrichment["q_value"][0]) if enrichment.height else None}
    rng = np.random.default_rng(seed)
    labels = sheet["group"].to_numpy()
    study_rows = np.flatnonzero(np.isin(labels, ["case", "control"]))
    any_class = 0
    for _ in range(permutations):
        permuted = labels.copy()
        for value in ("case", "control"):  # balanced: each new group holds half of each true group
            members = study_rows[labels[study_rows] == value]
            permuted[members] = rng.permutation(np.array(["case", "control"] * (len(members) // 2)
                                                         + ["case"] * (len(members) % 2)))
        table, _, values = differential_with_values(matrix, sheet.with_columns(pl.Series("group", permuted)),
                                                    outcome, identifications)
        enrichment, _ = class_enrichment(table, values=values)
        any_class += bool((enrichment["q_value"] < 0.05).any())
    result["permutations"] = permutations
    result["permutations_with_a_class_q05"] = any_class
    return result


def sacurine_classes(data: Path) -> list[str | None]:
    """The chemical class of each sacurine metabolite (its variable metadata, "AA-pep:AcyGly" written as a path)."""
    meta = pl.read_csv(data / "outcomes" / "sacurine" / "sacurine_variableMetadata.tsv", separator="\t",
                       infer_schema_length=0)
    return [c.replace(":", "; ") if c else None for c in meta["chemicalClass"].to_list()]


def class_draw(matrix: np.ndarray, classes: list[str | None], n: int, rng: np.random.Generator, fold: float,
               permutations: int) -> dict:
    """One random split of ``n`` + ``n`` samples: the class tables of the null and of one class raised ``fold``x
    in the second group, with permutation and Kolmogorov-Smirnov p-values."""
    cols = rng.choice(matrix.shape[1], 2 * n, replace=False)
    group = np.repeat([False, True], n)
    sets: dict[str, list[int]] = {}
    for i, value in enumerate(classes):
        for path in class_paths(value):
            sets.setdefault("; ".join(path), []).append(i)
    spikeable = sorted(k for k, v in sets.items() if 6 <= len(v) <= 20)
    out: dict = {}
    for scenario in ("null", "spike"):
        x = matrix[:, cols].copy()
        spiked_class = None
        if scenario == "spike":
            spiked_class = spikeable[int(rng.integers(len(spikeable)))]
            x[np.ix_(sets[spiked_class], group)] *= fold
        x = median_normalise(np.where(x > 0, x, np.nan), np.ones(x.shape[1], dtype=bool))[0]
        frame, sheet = as_study(x, group)
        table, _, values = differential_with_values(frame, sheet, BINARY, n_permutations=permutations,
                                                    seed=int(rng.integers(1 << 30)))
        names = pl.DataFrame({"consensus_id": [f"C{i:05d}" for i in range(len(classes))],
                              "name": [f"metabolite {i}" for i in range(len(classes))], "compound_class": classes})
        table = table.drop("name", "compound_class").join(names, on="consensus_id", how="left")
        spiked_ids = {f"C{i:05d}" for i in sets[spiked_class]} if spiked_class else set()
        arms = (("permutation", {"values": values, "seed": int(rng.integers(1 << 30))}),
                ("fisher_independent", {}), ("ks_independent", {}))
        for arm, kwargs in arms:
            enrichment, _ = class_enrichment(table, **kwargs)
            if arm == "ks_independent":  # ChemRICH's reading: KS of the table's p-values against uniform
                p_of = dict(zip(table["consensus_id"], table["p_value"]))
                p_ks = [stats.kstest([p_of[c] for c in ids], "uniform", alternative="greater").pvalue
                        for ids in enrichment["consensus_ids"].to_list()]
                enrichment = enrichment.with_columns(pl.Series("p_value", p_ks, dtype=pl.Float64)).with_columns(
                    pl.Series("q_value", bh_q_values(np.array(p_ks)), dtype=pl.Float64))
            hit = (enrichment["q_value"] < 0.05).to_numpy()
            if scenario == "null":
                out[f"{arm}_null_p05"] = float(np.mean(enrichment["p_value"].to_numpy() < 0.05))
                out[f"{arm}_null_any_q05"] = bool(hit.any())
            else:
                holds = np.array([bool(spiked_ids & set(c)) for c in enrichment["consensus_ids"].to_list()])
                found = enrichment.filter(pl.col("class_path") == spiked_class)
                out[f"{arm}_spike_found"] = bool(found.height and found["q_value"][0] < 0.05)
                out[f"{arm}_spike_false_class"] = bool((hit & ~holds).any())
        if scenario == "null":
            out["global_shift_null_p05"] = shift_p(table, values, rng) < 0.05
    for key, factor in (("global_shift_raw_null_p05", 1.0), ("global_shift_raw_shift_found", SHIFT)):
        x = matrix[:, cols].copy()
        x[:, group] *= factor
        frame, sheet = as_study(np.where(x > 0, x, np.nan), group)
        table, _, values = differential_with_values(frame, sheet, BINARY, n_permutations=permutations,
                                                    seed=int(rng.integers(1 << 30)))
        out[key] = shift_p(table, values, rng) < 0.05
    return out


def shift_p(table: pl.DataFrame, values, rng: np.random.Generator) -> float:
    """The differential summary's ``global_shift`` p-value over the tested features (1,000 label permutations, or
    every labelling when there are fewer, as the differential stage runs it)."""
    shift = global_shift(values, table.filter(pl.col("tested"))["consensus_id"].to_list(), 1000,
                         int(rng.integers(1 << 30)))
    return float(shift["p_value"]) if shift else float("nan")


def class_calibration(data: Path, draws: int, sizes: list[int], fold: float, seed: int, permutations: int) -> dict:
    """The class enrichment's calibration on sacurine (module docstring); {} without its tables."""
    studies = load_studies(data)
    if "sacurine" not in studies:
        return {}
    classes = sacurine_classes(data)
    result: dict = {"study": "sacurine", "draws": draws, "fold": fold, "class_permutations": 1000,
                    "spiked_class_size": "6-20 compounds, one class path drawn per split", "sizes": {}}
    for n in sizes:
        rng = np.random.default_rng([seed, n, 7])
        rows = [class_draw(studies["sacurine"], classes, n, rng, fold, permutations) for _ in range(draws)]
        summary = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}
        result["sizes"][f"n{n}"] = summary
        print("classes", n, json.dumps(summary), flush=True)
    return result


def sacurine_ages(data: Path) -> np.ndarray:
    """Each sacurine sample's age (years), in the data matrix's column order (its sample metadata joined by name)."""
    root = data / "outcomes" / "sacurine"
    names = pl.read_csv(root / "sacurine_dataMatrix.tsv", separator="\t", n_rows=0).columns[1:]
    meta = pl.read_csv(root / "sacurine_sampleMetadata.tsv", separator="\t", infer_schema_length=0)
    age = dict(zip(meta["sampleMetadata"].to_list(), meta["age"].cast(pl.Float64).to_list(), strict=True))
    return np.array([age[n] for n in names], dtype=np.float64)


def covariate_draw(matrix: np.ndarray, age: np.ndarray, classes: list[str | None], n: int,
                   rng: np.random.Generator, permutations: int, n_spiked: int, fold: float) -> dict:
    """One confounded split: ``2 n`` random samples, the ``n`` with the highest standardised age plus N(0, 0.5^2)
    noise in the second group (so the groups differ in age and nothing else about the metabolites). Under this null the
    unadjusted test calls age-related metabolites different; the test adjusted for age should not. Per arm
    (unadjusted, adjusted for age): the features' share at p < 0.05 and whether any q < 0.05, the classes' share at
    p < 0.05 and whether any class q < 0.05, whether the study-wide shift (``global_shift``) has p < 0.05; then
    ``n_spiked`` random features x ``fold`` in the second group: the share of them at q < 0.05 (``spike_recall``,
    averaged over splits) and the false-discovery proportion among the other features."""
    cols = rng.choice(matrix.shape[1], 2 * n, replace=False)
    a = age[cols]
    score = (a - a.mean()) / a.std() + 0.5 * rng.standard_normal(a.size)
    group = np.zeros(2 * n, dtype=bool)
    group[np.argsort(score)[n:]] = True
    out: dict = {"age_difference_years": float(a[group].mean() - a[~group].mean())}
    names = pl.DataFrame({"consensus_id": [f"C{i:05d}" for i in range(len(classes))],
                          "name": [f"metabolite {i}" for i in range(len(classes))], "compound_class": classes})
    for scenario in ("null", "spike"):
        spiked, frame, sheet = spiked_split(matrix[:, cols], group, scenario == "spike", rng, n_spiked, fold)
        sheet = sheet.with_columns(age=pl.Series([f"{v:g}" for v in a]))
        for arm, covariates in (("unadjusted", ()), ("adjusted", ("age",))):
            table, _, values = differential_with_values(frame, sheet, BINARY, covariates=covariates,
                                                        n_permutations=permutations,
                                                        seed=int(rng.integers(1 << 30)))
            tested = table.filter(pl.col("tested")).sort("consensus_id")
            rows = np.array([int(c[1:]) for c in tested["consensus_id"]])
            p, q = tested["p_value"].to_numpy(), tested["q_value"].to_numpy()
            if scenario == "null":
                out[f"{arm}_null_p05"] = float(np.mean(p < 0.05))
                out[f"{arm}_null_any_q05"] = bool((q < 0.05).any())
                table = table.drop("name", "compound_class").join(names, on="consensus_id", how="left")
                enrichment, _ = class_enrichment(table, values=values, n_permutations=1000,
                                                 seed=int(rng.integers(1 << 30)))
                out[f"{arm}_class_null_p05"] = float(np.mean(enrichment["p_value"].to_numpy() < 0.05))
                out[f"{arm}_class_null_any_q05"] = bool((enrichment["q_value"] < 0.05).any())
                out[f"{arm}_shift_null_p05"] = shift_p(table, values, rng) < 0.05
            else:
                hit, truth = q < 0.05, spiked[rows]
                out[f"{arm}_spike_recall"] = float(hit[truth].mean()) if truth.any() else 0.0
                out[f"{arm}_spike_fdp"] = float((hit & ~truth).sum() / max(hit.sum(), 1))
    return out


def covariate_calibration(data: Path, draws: int, sizes: list[int], seed: int, permutations: int,
                          n_spiked: int = 10, fold: float = 2.0) -> dict:
    """The binary test with and without the covariate age on confounded splits of sacurine (``covariate_draw``);
    {} without its tables."""
    studies = load_studies(data)
    if "sacurine" not in studies:
        return {}
    age, classes = sacurine_ages(data), sacurine_classes(data)
    result: dict = {"study": "sacurine", "draws": draws, "n_spiked": n_spiked, "fold": fold,
                    "confounding": "second group: the n of 2n random samples with the highest standardised age "
                                   "+ 0.5 x N(0, 1)", "sizes": {}}
    for n in sizes:
        rng = np.random.default_rng([seed, n, 11])
        rows = [covariate_draw(studies["sacurine"], age, classes, n, rng, permutations, n_spiked, fold)
                for _ in range(draws)]
        summary = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}
        result["sizes"][f"n{n}"] = summary
        print("covariates", n, json.dumps(summary), flush=True)
    return result


def run(data: Path, draws: int, sizes: list[int], n_spiked: int, fold: float, seed: int,
        permutations: int = 50) -> dict:
    studies = load_studies(data)
    if not studies:
        raise SystemExit(f"no study tables under {data}/outcomes")
    result = {"draws": draws, "n_spiked": n_spiked, "fold": fold, "seed": seed, "permutations": permutations,
              "preparation": "PQN, log2, detected in >= half of one group's samples, half-minimum fill", "studies": {}}
    for name, matrix in studies.items():
        for n in sizes:
            rng = np.random.default_rng([seed, n, len(name)])
            rows = [one_draw(matrix, n, rng, n_spiked, fold, permutations) for _ in range(draws)]
            summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            summary["n_features"] = int(prepared(matrix).shape[0])
            result["studies"][f"{name}_n{n}"] = summary
            print(name, n, json.dumps({k: round(v, 4) for k, v in summary.items()}), flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--permutations", type=int, default=50,
                    help="the moderated test's permutations per draw (the product's default is 200; the null is "
                         "pooled over every feature, so 50 x 1,000 features already give 50,000 statistics)")
    ap.add_argument("--demo", type=Path, help="a finished demo run (make demo) for the issue's demo targets")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--n-spiked", type=int, default=15)
    ap.add_argument("--fold", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--class-draws", type=int, default=200, help="random splits per size for the class enrichment")
    ap.add_argument("--class-fold", type=float, default=2.0, help="fold change of the spiked class")
    ap.add_argument("--class-only", action="store_true", help="only the class enrichment part")
    ap.add_argument("--covariates", action="store_true",
                    help="only the covariate part: confounded splits (age), the test with and without age")
    ap.add_argument("--covariate-draws", type=int, default=100)
    ap.add_argument("--covariate-sizes", type=int, nargs="+", default=[10, 20, 40])
    args = ap.parse_args()
    started = time.perf_counter()
    if args.covariates:
        result = {"covariates": covariate_calibration(args.data, args.covariate_draws, args.covariate_sizes,
                                                      args.seed, args.permutations)}
        result["seconds"] = round(time.perf_counter() - started, 1)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    result = ({} if args.class_only else
              run(args.data, args.draws, args.sizes, args.n_spiked, args.fold, args.seed, args.permutations))
    if args.class_draws > 0:
        result["class_enrichment"] = class_calibration(args.data, args.class_draws, args.sizes, args.class_fold,
                                                       args.seed, args.permutations)
    if args.demo:
        result["demo"] = demo_targets(args.demo)
        print("demo", json.dumps(result["demo"]), flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
