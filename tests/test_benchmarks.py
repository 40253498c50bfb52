"""The identification benchmark runs end to end on real MassBank data (a few held-out structures) and its numbers
are internally consistent; the paired bootstrap interval behaves as an interval."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import identification


def test_bootstrap_interval_is_paired_and_brackets_the_ratio() -> None:
    rng = np.random.default_rng(1)
    theirs = rng.random(200) < 0.75
    ours = theirs | (rng.random(200) < 0.3)  # fixes some of their errors, breaks none
    ratio = (1 - ours.mean()) / (1 - theirs.mean())
    lo, hi = identification.bootstrap_error_ratio(ours, theirs, seed=0)
    assert lo <= ratio <= hi <= 1.0
    assert identification.bootstrap_error_ratio(theirs, theirs, seed=0) == [1.0, 1.0]
    assert identification.bootstrap_error_ratio(np.zeros(0, bool), np.zeros(0, bool), seed=0) is None


def test_identification_benchmark_on_held_out_massbank(shared_data: Path) -> None:
    library = shared_data / "massbank" / "massbank_dev.mgf.gz"
    if not library.is_file():
        pytest.skip(f"{library} is absent")
    from ms2study.encoder import checkpoints

    model_dir = checkpoints.resolve_model_dir("default")
    result = identification.run(library, model_dir, 60, 10.0, 0, {"device": "cpu"})
    main = result["identification"]
    assert result["split"]["held_out"] == "test" and main["n_queries"] == 60
    assert 0 < main["n_isomer_queries"] <= main["n_answerable"] <= 60
    for name in ("cosine", "modified_cosine", "entropy", "embedding", "combined"):
        assert 0.5 <= main["top1_all"][name] <= 1.0, name
    assert result["combined_score"].startswith("learned")
    t = result["targets"]
    lo, hi = t["isomer_error_ratio_ci95"]
    ratio = t["isomer_error_ratio_combined_vs_best_classical"]
    assert lo <= ratio <= hi
    assert [lv["level"] for lv in result["low_concentration"]] == [0, 1, 2, 3, 4]


def test_summary_judges_targets_on_the_means() -> None:
    def draw(seed, cos, ent, comb, cos_i, ent_i, comb_i):
        return {"seed": seed,
                "identification": {"top1_all": {"cosine": cos, "modified_cosine": cos, "entropy": ent,
                                                "combined": comb},
                                   "top1_isomer": {"cosine": cos_i, "modified_cosine": cos_i, "entropy": ent_i,
                                                   "combined": comb_i}},
                "targets": {"isomer_error_ratio_combined_vs_best_classical": (1 - comb_i) / (1 - max(cos_i, ent_i)),
                            "all_combined_not_below_best_classical": comb >= max(cos, ent),
                            "precision_combined_ge_cosine_every_level": True}}

    s = identification.summarize([draw(0, 0.90, 0.91, 0.93, 0.70, 0.80, 0.90),
                                  draw(1, 0.90, 0.89, 0.88, 0.70, 0.60, 0.80)])
    assert s["top1_all_mean"]["combined"] == pytest.approx(0.905)
    assert s["top1_isomer_mean"]["entropy"] == pytest.approx(0.70)
    t = s["targets"]
    # Means: combined 0.905 vs best classical 0.90 -> not below (draw 1 alone is); isomer error 0.15 vs 0.30 -> 0.5.
    assert t["all_combined_not_below_best_classical_mean"] and t["all_combined_not_below_best_classical_draws"] == 1
    assert t["isomer_error_ratio_of_means"] == pytest.approx(0.5) and t["isomer_target_met"]


def test_differential_benchmark_on_real_studies(shared_data: Path, tmp_path: Path) -> None:
    """A few null and spike-in draws on the real study tables: every rate is a share and the spikes are found more
    often than the null rejects."""
    import differential_calibration as dc

    result = dc.run(shared_data, draws=2, sizes=[8], n_spiked=15, fold=3.0, seed=0)
    for name, row in result["studies"].items():
        assert all(0.0 <= row[k] <= 1.0 for k in row if k != "n_features"), name
        assert row["welch_recall"] >= row["welch_null_p05"] / 2, name


def test_outcome_calibration_benchmark_draws_confounded_three_group_and_continuous_splits(shared_data: Path) -> None:
    """One draw of each part on sacurine: every rate is a share, the confounded split's oldest group is older, and
    the three-fold spike is found by the moderated F more often than the null rejects."""
    import differential_calibration as dc
    import outcome_calibration as oc

    matrix = dc.load_studies(shared_data)["sacurine"]
    age, classes = dc.sacurine_ages(shared_data), dc.sacurine_classes(shared_data)
    rng = np.random.default_rng(0)
    rows = [oc.one_draw(matrix, 8, rng, 15, 3.0, 20),
            oc.covariate_draw(matrix, age, classes, 10, rng, 20, 10, 2.0),
            oc.continuous_draw(matrix, age, classes, 24, rng, 20, 15, 2.0)]
    for row in rows:
        assert all(0.0 <= float(v) <= 1.0 for k, v in row.items() if k != "age_difference_years"), row
    assert rows[0]["moderated_recall"] > rows[0]["moderated_null_p05"]
    assert rows[1]["age_difference_years"] > 5
    assert {"class_null_p05", "shift_null_p05", "ols_tdist_recall"} <= set(rows[2])


def test_scale_benchmark_times_jobs_replicates_samples_and_judges_the_targets(tmp_path: Path) -> None:
    """benchmarks/scale.py's pieces, small: a command run as a rule runs it (``python`` from the interpreter's
    folder) is timed and parsed back; a study is replicated under new sample ids; the issue's shares come out of
    known measurements. (``scale.py --quick`` runs the whole benchmark, minutes.)"""
    import subprocess

    import polars as pl
    import scale
    import yaml

    log = tmp_path / "jobs.time"
    python, env = scale.timed_python(tmp_path / "timed", log)
    subprocess.run([str(Path(python).parent / "python"), "-m", "ms2study", "--threads", "1", "pool", "--help"],
                   env=env, check=True, capture_output=True, timeout=120)
    (run,) = scale.parse_times(log)
    assert run["rule"] == "pool" and run["sample"] is None
    assert run["cpu_s"] > 0 and run["wall_s"] >= run["cpu_s"] / 2 and 10 < run["peak_mb"] < 4000

    source = tmp_path / "small"
    (source / "mzml").mkdir(parents=True)
    (source / "library.mgf").write_text("BEGIN IONS\nEND IONS\n")
    (source / "config.yaml").write_text(yaml.safe_dump({"library": "library.mgf"}))
    pl.DataFrame({"sample_id": ["S01", "S02"], "file": ["mzml/S01.mzML", "mzml/S02.mzML"],
                  "group": ["case", "control"]}).write_csv(source / "samples.tsv", separator="\t")
    for folder in ("results/library/library", "results/confidence"):
        (source / folder).mkdir(parents=True)
    for sample in ("S01", "S02"):
        (source / "mzml" / f"{sample}.mzML").write_text("<mzML></mzML>")
        (source / "results" / "samples" / sample).mkdir(parents=True)
        pl.DataFrame({"sample_id": [sample] * 2, "feature_id": [f"{sample}:1", f"{sample}:2"],
                      "intensity": [100.0, 200.0]}).write_parquet(
            source / "results" / "samples" / sample / "features.parquet")
        pl.DataFrame({"spectrum_id": [f"{sample}:s1"], "sample_id": [sample], "embedding": [[0.6, 0.8]]},
                     schema_overrides={"embedding": pl.List(pl.Float32)}).write_parquet(
            source / "results" / "samples" / sample / "embeddings.parquet")
        pl.DataFrame({"spectrum_id": [f"{sample}:s1"], "sample_id": [sample], "embedding": [0.9]}).write_parquet(
            source / "results" / "samples" / sample / "annotations.parquet")  # a score named embedding: kept
        pl.DataFrame({"rt_s": [1.0], "mz": [[100.0]], "intensity": [[5.0]]}).write_parquet(
            source / "results" / "samples" / sample / "ms1_scans.parquet")  # no sample id: copied as it is
    ids = scale.replicate(source, tmp_path / "n5", 5)
    assert ids == ["S01", "S02", "S01r2", "S02r2", "S01r3"]
    copied = pl.read_parquet(tmp_path / "n5" / "results" / "samples" / "S02r2" / "features.parquet")
    assert copied.select("sample_id", "feature_id").to_dict(as_series=False) == {
        "sample_id": ["S02r2"] * 2, "feature_id": ["S02r2:1", "S02r2:2"]}
    # a copy is varied like another sample of its group (intensities log-normal, embeddings a little, unit length);
    # a measured sample stays as measured
    ratio = copied["intensity"].to_numpy() / np.array([100.0, 200.0])
    assert np.all(ratio != 1.0) and np.all((ratio > 0.2) & (ratio < 5.0))
    embeddings = pl.read_parquet(tmp_path / "n5" / "results" / "samples" / "S02r2" / "embeddings.parquet")
    assert embeddings.schema["embedding"] == pl.List(pl.Float32)  # the contract's type, as the stages read it
    vector = np.array(embeddings["embedding"][0].to_list())
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5 and 0 < np.abs(vector - [0.6, 0.8]).max() < 0.5
    assert pl.read_parquet(tmp_path / "n5" / "results" / "samples" / "S02" / "features.parquet")[
        "intensity"].to_list() == [100.0, 200.0]
    assert pl.read_parquet(tmp_path / "n5" / "results" / "samples" / "S02r2" / "annotations.parquet")[
        "embedding"].to_list() == [0.9]
    assert (tmp_path / "n5" / "mzml" / "S01r3.mzML").resolve() == (source / "mzml" / "S01.mzML").resolve()
    sheet = pl.read_csv(tmp_path / "n5" / "samples.tsv", separator="\t")
    assert sheet["group"].to_list() == ["case", "control", "case", "control", "case"]
    scans = tmp_path / "n5" / "results" / "samples" / "S01r3" / "ms1_scans.parquet"
    assert scans.read_bytes() == (source / "results" / "samples" / "S01" / "ms1_scans.parquet").read_bytes()
    assert not scans.is_symlink() and scans.stat().st_nlink == 1
    # gap filling runs in the replicated studies (the study job over every run is measured at each size)
    assert yaml.safe_load((tmp_path / "n5" / "config.yaml").read_text())["correct"]["gap_fill"] is True
    assert yaml.safe_load((scale.replicate(source, tmp_path / "n3", 3, gap_fill=False) and tmp_path / "n3" /
                           "config.yaml").read_text())["correct"]["gap_fill"] is False

    # per sample 10 + 20 s CPU (start-up 2 + 4), library 30 s once; study stages measured at 2, 20 and 200 samples,
    # models left out at 200 (CPU 1 -> 100 s from 2 to 20 samples: exponent 2; peak 50 -> 59 MB: +0.5 MB a sample);
    # gapfill is a study job over every run (one job, 20 s at 200 samples)
    measured = {
        "small_run": {"samples": 2,
                      "per_sample": {"detect": {"cpu_s_median": 10.0, "phase": "sample"},
                                     "pool": {"cpu_s_median": 20.0, "phase": "sample"}},
                      "once_per_study": {"index_library": {"cpu_s_total": 30.0}},
                      "study": {"link": {"cpu_s_total": 5.0, "peak_mb_max": 100.0},
                                "models": {"cpu_s_total": 1.0, "peak_mb_max": 50.0},
                                "gapfill": {"cpu_s_total": 0.5, "peak_mb_max": 90.0}}},
        "startup": {"detect": {"cpu_s": 2.0}, "pool": {"cpu_s": 4.0}, "snakemake_job": {"cpu_s": 3.0}},
        "study_runs": [{"n_samples": 20, "exit_code": 0, "stages": {"link": {"cpu_s": 10.0, "peak_mb": 120.0},
                                                                   "models": {"cpu_s": 100.0, "peak_mb": 59.0},
                                                                   "gapfill": {"cpu_s": 2.0, "peak_mb": 95.0}}},
                       {"n_samples": 200, "exit_code": 0, "stages": {"link": {"cpu_s": 60.0, "peak_mb": 300.0},
                                                                    "gapfill": {"cpu_s": 20.0, "peak_mb": 100.0}}}],
        "add_one": {"gap_fill_on": {"detect": 1, "pool": 1, "gapfill": 1, "link": 1, "models": 1},
                    "gap_fill_off": {"detect": 1, "pool": 1, "link": 1}},
    }
    result = scale.judge(measured, [20, 200])
    models = result["study_stages_at_200"]["models"]
    assert models["extrapolated"] and models["cpu_s"] == 10000.0 and models["peak_mb"] == 149.0
    assert result["extrapolated"] == ["models"]
    full = 200 * 30 + 30 + 60 + 10000 + 20
    assert result["full_run_cpu_s_200"] == full
    assert result["study_cpu_share_200"] == round(10080 / full, 4)
    assert result["startup_share"] == round(6 / 30, 4) and result["startup_share_slurm"] == round(12 / 30, 4)
    assert result["study_peak_mb_per_sample_1000"] == 1.5 and result["study_peak_stage_1000"] == "link"
    # the one gapfill job is priced at its measured cost at 200 runs, once
    assert result["add_one_sample_share_200"] == round((10 + 20 + 20 + 60 + 10000) / full, 4)
    assert result["add_one_sample"]["gap_fill_off"]["cpu_s"] == 90.0
    # only the added sample's own per-sample jobs: no other sample's detect or pool reruns
    assert result["add_one_sample"]["gap_fill_on"]["other_samples_rerun"] == {}
    assert result["study_growth"]["link"]["peak_mb_per_added_sample"] == round(200 / 198, 4)
    assert not result["targets"]["study_cpu_share_200"]["met"] and result["targets"]["startup_share"]["met"]
    # the same study priced with larger runs' per-sample stages (another result's small run): 60 s a sample
    larger = {"small_run": {"samples": 2, "profile": "realistic", "mzml_mb": [19.0, 19.0],
                            "per_sample": {"detect": {"cpu_s_median": 40.0, "phase": "sample"},
                                           "pool": {"cpu_s_median": 20.0, "phase": "sample"}}},
              "startup": {"detect": {"cpu_s": 2.0}, "pool": {"cpu_s": 4.0}, "snakemake_job": {"cpu_s": 3.0}}}
    realistic = scale.judge_with_per_sample(measured, larger)
    assert realistic["per_sample_cpu_s"] == 60.0 and realistic["startup_share"] == round(6 / 60, 4)
    assert realistic["full_run_cpu_s_200"] == 200 * 60 + 30 + 60 + 10000 + 20 and "realistic" in realistic["how"]


def test_semireal_counts_a_spiked_compounds_heavy_isotopes_as_its_own():
    # Ambroxol (C13H18Br2N2O): its 81Br M+2 and M+4 are the compound's, not background discoveries; a feature 1 Da
    # off the 13C ladder and one at another RT are not
    import polars as pl
    import semireal

    from ms2study.simulate.spikein import isotope_envelope

    mono = 376.98587
    offsets, _ = isotope_envelope("C13H18Br2N2O", 5.0)
    heavy = [o for o in offsets if abs(o - round(o) * semireal.C13) > 0.004]  # off the 13C ladder: 81Br
    assert len(heavy) >= 2
    truth = pl.DataFrame({"mz": [mono], "rt_s": [265.0], "formula": ["C13H18Br2N2O"]})
    fm = pl.DataFrame({"mz": [mono, mono + heavy[0], mono + heavy[1], mono + 1.5, mono + heavy[0]],
                       "rt_s": [265.2, 265.1, 265.0, 265.0, 300.0]})
    assert semireal.spiked_ions(truth, fm, 5.0).to_list() == [True, True, True, False, False]
    assert semireal.spiked_ions(truth, fm).to_list()[1:3] == [False, False]  # the 13C ladder alone misses them
