"""Synthetic data with a planted relation, and a stand-in calibrator, for the predictor tests."""
import numpy as np

from mlcore.predictors import make_sequences, member_params

SEED = 11
N_FEATURES = 6
N_TRAIN = 4000
N_TEST = 1000
# One fit thread: the suite runs beside other pytest workers on 2 cores, where 2-thread OpenMP
# boosters spin against each other (a 6 s suite took 40 s). Predictions do not depend on it.
OVERRIDES = {name: {"threads": 1} for name in ("xgboost", "lightgbm", "random_forest", "catboost")}


class ShrinkCalibrator:
    """Stand-in for mlcore.domain.calibration: pulls probabilities towards 0.5."""

    def __init__(self, a: float = 0.8):
        self.a = a

    def transform(self, p: np.ndarray) -> np.ndarray:
        return 0.5 + self.a * (np.asarray(p, dtype=np.float64) - 0.5)

    def to_dict(self) -> dict:
        return {"a": self.a}

    @classmethod
    def from_dict(cls, data: dict) -> "ShrinkCalibrator":
        return cls(data["a"])


class Data:
    """Aligned rows, windows (ending at the row) and labels, split in time into train and test."""

    def __init__(self, seed: int = 7):
        seq_len = member_params("lstm", "fast")["seq_len"]
        n = N_TRAIN + N_TEST + seq_len - 1
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n, N_FEATURES))
        # The label depends on feature 0 of the bar itself: the window's last row.
        y = (X[:, 0] + 0.6 * rng.normal(size=n) > 0).astype(np.int64)
        seqs = make_sequences(X, seq_len)
        rows, y = X[seq_len - 1 :], y[seq_len - 1 :]
        self.seq_len = seq_len
        self.rows_train, self.rows_test = rows[:N_TRAIN], rows[N_TRAIN:]
        self.seqs_train, self.seqs_test = seqs[:N_TRAIN], seqs[N_TRAIN:]
        self.y_train, self.y_test = y[:N_TRAIN], y[N_TRAIN:]

    def train(self, kind: str) -> np.ndarray:
        return self.seqs_train if kind == "sequence" else self.rows_train

    def test(self, kind: str) -> np.ndarray:
        return self.seqs_test if kind == "sequence" else self.rows_test
