"""Sequence windows, the side bundle (predict one bar, save/load) and the latency report."""
import json

import numpy as np
import pytest

from mlcore.predictors import MEMBER_ORDER, MetaLearner, SideModel, make_sequences, predict_members
from mlcore.predictors.timing import time_members

from .synthetic import ShrinkCalibrator


def test_make_sequences_windows_end_at_each_row_without_copying():
    X = np.arange(30, dtype=np.float64).reshape(10, 3)
    seqs = make_sequences(X, 4)
    assert seqs.shape == (7, 4, 3)
    assert np.shares_memory(seqs, X)
    assert np.array_equal(seqs[0], X[0:4])
    assert np.array_equal(seqs[-1], X[6:10])
    assert np.array_equal(seqs[:, -1, :], X[3:])  # window i ends at row i + seq_len - 1: its label's row


@pytest.mark.parametrize("seq_len", [0, 11])
def test_make_sequences_refuses_impossible_lengths(seq_len):
    with pytest.raises(ValueError):
        make_sequences(np.zeros((10, 3)), seq_len)


@pytest.fixture(scope="module")
def side(fitted, data) -> SideModel:
    members = [fitted[name] for name in MEMBER_ORDER]
    # Members never saw the test rows: their predictions there are out-of-fold for the meta-learner.
    P = predict_members(members, data.rows_test, data.seqs_test)
    meta = MetaLearner().fit(P, data.y_test, list(MEMBER_ORDER))
    return SideModel(members, meta, ShrinkCalibrator(0.8), side="long", preset="fast", n_features=data.rows_test.shape[1])


def test_fit_members_records_each_members_fit_seconds(fitted):
    assert all(fitted[name].fit_seconds > 0 for name in MEMBER_ORDER)


def test_side_predict_one_runs_members_meta_and_calibrator(side, data):
    out = side.predict_one(data.rows_test[0], data.seqs_test[0])
    assert list(out["members"]) == list(MEMBER_ORDER)
    p = np.array(list(out["members"].values()))
    assert out["meta_raw"] == side.meta.predict_one(p)
    assert out["calibrated"] == pytest.approx(0.5 + 0.8 * (out["meta_raw"] - 0.5), abs=1e-15)
    batch = side.predict_proba(data.rows_test[:5], data.seqs_test[:5])
    np.testing.assert_allclose(batch["members"][0], p, atol=1e-6)
    np.testing.assert_allclose(batch["calibrated"][0], out["calibrated"], atol=1e-6)


def test_side_save_then_load_predicts_identically(side, data, tmp_path):
    written = side.save(tmp_path)
    assert "side.json" in written and all((tmp_path / f).is_file() for f in written)
    manifest = json.loads((tmp_path / "side.json").read_text())
    assert [m["name"] for m in manifest["members"]] == list(MEMBER_ORDER)
    assert manifest["seq_len"] == data.seq_len and manifest["calibrator"]["state"] == {"a": 0.8}

    loaded = SideModel.load(tmp_path, calibrator_from_dict=ShrinkCalibrator.from_dict)
    assert loaded.member_names == side.member_names and loaded.seq_len == side.seq_len
    for i in range(10):
        again, first = (model.predict_one(data.rows_test[i], data.seqs_test[i]) for model in (loaded, side))
        assert again.pop("member_ms").keys() == first.pop("member_ms").keys()  # wall-clock timings: keys only
        assert again == first
    a = loaded.predict_proba(data.rows_test, data.seqs_test)
    b = side.predict_proba(data.rows_test, data.seqs_test)
    assert all(np.array_equal(a[k], b[k]) for k in ("members", "meta_raw", "calibrated"))


def test_side_load_asks_for_the_calibrator_it_holds(side, tmp_path):
    side.save(tmp_path)
    with pytest.raises(ValueError, match="calibrator_from_dict"):
        SideModel.load(tmp_path)


def test_side_without_calibrator_passes_the_raw_probability_through(side, data):
    bare = SideModel(side.members, side.meta)
    out = bare.predict_one(data.rows_test[0], data.seqs_test[0])
    assert out["calibrated"] == out["meta_raw"]


def test_side_refuses_members_in_another_order_than_the_meta_learner(side):
    with pytest.raises(ValueError, match="meta-learner expects"):
        SideModel(list(reversed(side.members)), side.meta)


def test_time_members_reports_percentiles_per_stage(side, data, capsys):
    report = time_members(side, data.rows_test[0], data.seqs_test[0], repeats=300)
    assert set(report) == set(MEMBER_ORDER) | {"meta", "calibration", "side"}
    assert all(0 < r["p50"] <= r["p95"] <= r["p99"] for r in report.values())
    with capsys.disabled():  # a report, not an assertion: speed targets are benchmarks
        print("\nsingle-sample latency, fast preset, 6 features (µs):")
        for name, r in report.items():
            print(f"  {name:14s} p50 {r['p50'] * 1e3:8.1f}  p95 {r['p95'] * 1e3:8.1f}  p99 {r['p99'] * 1e3:8.1f}")
