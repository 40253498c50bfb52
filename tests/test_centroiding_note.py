"""How the detect stage centroided a run's MS1 scans reaches the QC table and the report (a trial's profile-mode run
among vendor-centroided runs was centroided here, and only the detect log said so)."""

from __future__ import annotations

import polars as pl
from test_detect import default_compounds, make_run, write_run

from ms2study.modelling.qc import (
    FORCED_CENTROIDED,
    PROFILE_CENTROIDED,
    PROFILE_NOT_CENTROIDED,
    read_chromatogram_summary,
)
from ms2study.reporting.html import DOUBT, PROCESSING, QUALITY
from ms2study.reporting.runnotes import centroiding_warning, run_warnings
from ms2study.stages.detect import detect_run


def _summary(tmp_path, name, profile, params=None):
    from ms2study.core.atomic import write_parquet

    path = write_run(make_run(default_compounds(6), profile=profile, declare_type=False), tmp_path / f"{name}.mzML")
    _, chrom, meta, _ = detect_run(path, name, params)
    out = tmp_path / f"{name}_chrom.parquet"
    write_parquet(chrom, out, metadata=meta)
    return read_chromatogram_summary(str(out))


def test_detect_records_how_it_centroided_the_run(tmp_path):
    assert _summary(tmp_path, "C", profile=False)["ms1_centroiding"] is None  # used as written
    assert _summary(tmp_path, "P", profile=True)["ms1_centroiding"] == PROFILE_CENTROIDED
    assert _summary(tmp_path, "N", profile=True, params={"centroid": "never"})["ms1_centroiding"] == \
        PROFILE_NOT_CENTROIDED
    assert _summary(tmp_path, "A", profile=False, params={"centroid": "always"})["ms1_centroiding"] == \
        FORCED_CENTROIDED
    assert _summary(tmp_path, "C2", profile=False)["n_ms1_scans"] > 0  # the other keys are kept


def _qc(values):
    return pl.DataFrame({"sample_id": [f"S{i}" for i in range(len(values))], "ms1_centroiding": values},
                        schema={"sample_id": pl.Utf8, "ms1_centroiding": pl.Utf8})


def test_profile_runs_mixed_with_vendor_centroided_runs_are_a_caution():
    warnings: list = []
    centroiding_warning(_qc([None, None, PROFILE_CENTROIDED, None]), warnings)
    assert len(warnings) == 1 and warnings[0].kind == DOUBT
    assert "1 of 4 runs" in warnings[0] and "S2" in warnings[0] and "other 3" in warnings[0]
    warnings = []
    centroiding_warning(_qc([PROFILE_CENTROIDED] * 3), warnings)  # one method for all: a processing note
    assert len(warnings) == 1 and warnings[0].kind == PROCESSING and "3 runs" in warnings[0]
    warnings = []
    centroiding_warning(_qc([None, PROFILE_NOT_CENTROIDED, FORCED_CENTROIDED]), warnings)
    kinds = sorted(w.kind for w in warnings)
    assert kinds == sorted([DOUBT, QUALITY]) and any("S1" in w and "never" in w for w in warnings)
    assert any("S2" in w and "always" in w for w in warnings)
    warnings = []
    centroiding_warning(_qc([None, None]), warnings)  # as written: said as a processing note (trial AW)
    assert len(warnings) == 1 and warnings[0].kind == PROCESSING and "came centroided" in warnings[0]
    warnings = []
    centroiding_warning(pl.DataFrame({"sample_id": ["S0"]}), warnings)  # an older table: nothing
    assert warnings == []
    warnings = []
    run_warnings(_qc([None, PROFILE_CENTROIDED]), warnings)  # the report's entry point calls it
    assert len(warnings) == 1 and warnings[0].kind == DOUBT
