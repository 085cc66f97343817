"""Every member: learns, answers one sample like the batch, saves and loads bit-exactly, refits deterministically."""
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlcore.predictors import MEMBER_ORDER, MEMBER_TYPES, Member, make_member

from .synthetic import OVERRIDES, SEED

pytestmark = pytest.mark.parametrize("name", MEMBER_ORDER)


def test_member_keeps_the_member_protocol(name, fitted):
    member = fitted[name]
    assert isinstance(member, Member)
    assert member.name == name
    assert member.kind == ("sequence" if name == "lstm" else "row")
    assert json.loads(json.dumps(member.params)) == member.params
    assert member.fit_seconds > 0


def test_member_learns_the_planted_relation(name, fitted, data):
    member = fitted[name]
    p = member.predict_proba(data.test(member.kind))
    assert p.dtype == np.float64 and p.shape == data.y_test.shape
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(data.y_test, p) > 0.7


def test_predict_one_equals_the_batch_prediction(name, fitted, data):
    member = fitted[name]
    X = data.test(member.kind)
    batch = member.predict_proba(X)
    one = np.array([member.predict_one(X[i]) for i in range(50)])
    np.testing.assert_allclose(one, batch[:50], rtol=0, atol=1e-6)
    assert isinstance(member.predict_one(X[0]), float)


def test_save_then_load_predicts_identically(name, fitted, data, tmp_path):
    member = fitted[name]
    X = data.test(member.kind)
    files = member.save(tmp_path)
    assert files and all((tmp_path / f).is_file() for f in files)
    loaded = MEMBER_TYPES[name].load(tmp_path, json.loads(json.dumps(member.params)))
    assert np.array_equal(loaded.predict_proba(X), member.predict_proba(X))
    assert [loaded.predict_one(X[i]) for i in range(20)] == [member.predict_one(X[i]) for i in range(20)]


def test_same_seed_refit_predicts_identically(name, fitted, data):
    member = fitted[name]
    again = make_member(name, "fast", OVERRIDES.get(name))
    again.fit(data.train(member.kind), data.y_train, seed=SEED)
    X = data.test(member.kind)
    assert np.array_equal(again.predict_proba(X), member.predict_proba(X))
    assert again.predict_one(X[0]) == member.predict_one(X[0])


def test_fit_refuses_labels_with_one_class(name, data):
    member = make_member(name, "fast", OVERRIDES.get(name))
    with pytest.raises(ValueError, match="both classes"):
        member.fit(data.train(member.kind)[:300], np.ones(300, dtype=int), seed=SEED)
