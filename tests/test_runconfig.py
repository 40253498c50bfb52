"""What ``ms2study run`` says about configuration changes since the last finished run (``ms2study.runconfig``); the
pipeline test (``test_pipeline.py``) checks the message on a real run."""

from __future__ import annotations

from pathlib import Path

from ms2study import runconfig


def test_changed_keys_name_dotted_keys_with_old_and_new_values(tmp_path: Path) -> None:
    config = {"annotate": {"fdr": 0.01, "min_matched_peaks": 1}, "library": ["a.msp"], "reference_sample": None}
    assert runconfig.changed_keys(tmp_path, config) == []  # no finished run recorded
    runconfig.remember(tmp_path, config)
    assert runconfig.change_message(tmp_path, config) is None
    edited = {"annotate": {"fdr": 0.05}, "library": ["a.msp", "b.mgf"], "reference_sample": None, "new": {"k": 1}}
    assert runconfig.changed_keys(tmp_path, edited) == [
        'annotate.fdr: 0.01 -> 0.05', "annotate.min_matched_peaks: 1 -> (not set)",
        'library: added "b.mgf"', "new.k: (not set) -> 1"]
    # a list of mappings (models: outcomes) names the element removed, not two lists cut at the same prefix
    outcomes = [{"column": "group", "type": "binary", "positive_class": "case"}, {"column": "age", "type": "continuous"}]
    runconfig.remember(tmp_path / "o", {"models": {"outcomes": outcomes}})
    assert runconfig.changed_keys(tmp_path / "o", {"models": {"outcomes": outcomes[:1]}}) == [
        'models.outcomes: removed {"column": "age", "type": "continuous"}']
    message = runconfig.change_message(tmp_path, edited)
    assert message.startswith("ms2study run: 4 configuration value(s) changed since the last finished run")
    # trial BB: a job's memory raised after an out-of-memory kill reruns nothing, and is said so apart
    sized = runconfig.change_message(tmp_path, {**edited, "resources": {"detect": {"mem_mb": 4000}}})
    assert sized.splitlines()[1] == ("ms2study run: 1 job size(s) changed (resources: what a job asks for; no job "
                                     "reruns for it, jobs still to run ask for the new values): "
                                     "resources.detect.mem_mb: (not set) -> 4000")
    assert "run again" not in runconfig.change_message(tmp_path / "o", {
        "models": {"outcomes": outcomes}, "resources": {"embed": {"gpu": 1}}})
    (tmp_path / runconfig.LAST_CONFIG).write_text("{broken")  # unreadable: treated as no record, never an error
    assert runconfig.changed_keys(tmp_path, edited) == []
