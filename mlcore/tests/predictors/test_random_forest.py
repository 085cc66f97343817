"""The flattened forest answers exactly what scikit-learn's predict_proba answers, without its 10 ms."""
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from mlcore.predictors import RandomForestMember
from mlcore.predictors.trees import FlatForest


def _data(n=3000, f=8, seed=3, nan_share=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    y = (X[:, 0] - X[:, 1] + rng.normal(size=n) > 0).astype(int)
    if nan_share:
        X[rng.random(X.shape) < nan_share] = np.nan
    return X, y


@pytest.mark.parametrize(
    "forest_params",
    [
        {"n_estimators": 100, "max_depth": 8, "min_samples_leaf": 50},
        {"n_estimators": 20, "max_depth": None, "min_samples_leaf": 1},  # deep, uneven trees
        {"n_estimators": 10, "max_depth": 1, "min_samples_leaf": 1, "max_features": None},  # stumps
    ],
)
def test_flat_forest_equals_sklearn_predict_proba(forest_params):
    X, y = _data()
    forest = RandomForestClassifier(random_state=0, n_jobs=1, **forest_params).fit(X[:2000], y[:2000])
    expected = forest.predict_proba(X[2000:])[:, 1]
    flat = FlatForest(forest)
    np.testing.assert_allclose(flat.predict_proba(X[2000:], chunk=97), expected, rtol=0, atol=1e-12)
    one = np.array([flat.predict_one(x) for x in X[2000:2200]])
    np.testing.assert_allclose(one, expected[:200], rtol=0, atol=1e-12)


def test_flat_forest_routes_missing_values_like_sklearn():
    X, y = _data(nan_share=0.1)
    forest = RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0, n_jobs=1).fit(X[:2000], y[:2000])
    expected = forest.predict_proba(X[2000:])[:, 1]
    flat = FlatForest(forest)
    np.testing.assert_allclose(flat.predict_proba(X[2000:]), expected, rtol=0, atol=1e-12)
    one = np.array([flat.predict_one(x) for x in X[2000:2300]])
    np.testing.assert_allclose(one, expected[:300], rtol=0, atol=1e-12)


def test_flat_forest_routes_missing_values_unseen_in_training_like_sklearn():
    X, y = _data()
    forest = RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0, n_jobs=1).fit(X[:2000], y[:2000])
    X_new = X[2000:2300].copy()
    X_new[::3, 0] = np.nan
    expected = forest.predict_proba(X_new)[:, 1]
    np.testing.assert_allclose([FlatForest(forest).predict_one(x) for x in X_new], expected, rtol=0, atol=1e-12)


def test_random_forest_member_agrees_with_its_sklearn_forest():
    X, y = _data()
    member = RandomForestMember({"n_estimators": 40, "max_depth": 8, "min_samples_leaf": 20})
    member.fit(X[:2000], y[:2000], seed=5)
    expected = member.model.predict_proba(X[2000:])[:, 1]
    np.testing.assert_allclose(member.predict_proba(X[2000:]), expected, rtol=0, atol=1e-12)
    assert abs(member.predict_one(X[2500]) - expected[500]) <= 1e-12
