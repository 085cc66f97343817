"""The sequence member: a small Keras LSTM on standardised windows of feature rows, served through a jitted JAX call."""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

# The backend was chosen in mlcore/predictors/__init__.py, which always runs before this module.
import jax
import keras
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import check_labels, member_params

logger = logging.getLogger(__name__)

if keras.backend.backend() != "jax":
    raise ImportError(
        f"mlcore.predictors needs the JAX Keras backend, but keras was loaded with {keras.backend.backend()!r} "
        "(KERAS_BACKEND set elsewhere, or keras imported before mlcore.predictors)"
    )



def _use_a_compilation_cache() -> None:
    """Keep XLA's compiled programs in JAX's persistent compilation cache, unless the environment chose a folder.

    Every LSTM fit builds a new Keras model, whose train step and forward pass JAX traces and XLA compiles
    again: ~5-7 s of the 6-8 s a small fit takes on this 2-core machine, paid by every member of every
    cross-fitting block. Same shapes and settings give the same program, so with the cache the compiled one is
    reused (a later fit takes ~1 s) and the outputs are the ones the compiler would have produced anyway.
    The folder is per user under the system temp folder; MINHOS_JAX_CACHE_DIR or JAX_COMPILATION_CACHE_DIR
    moves it.
    """
    if jax.config.jax_compilation_cache_dir:
        return
    folder = os.environ.get("MINHOS_JAX_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), f"minhos-jax-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


_use_a_compilation_cache()

# The jitted forward runs on fixed, zero-padded chunks: LIVE_CHUNK rows for one sample, BATCH_CHUNK for a batch.
# A row's result must not depend on the batch it came in (a backtest replays the live loop bit for bit), and XLA's
# CPU matmul does not give that for free: it works in panels of 8 rows, and a row alone (shape 1) or in a partial
# panel is summed in another order, ~1e-7 apart in float32 on ~40% of rows. Rows in whole panels agree across
# chunk sizes, so both chunks are multiples of 8; `_ready` checks the two agree on this machine (another CPU can
# use wider panels) and otherwise batches in LIVE_CHUNK rows too: slower, still exact. 8 rather than 1 costs the
# live bar tens of microseconds per side; a batch of 1024 runs ~5x faster per row than chunks of 8.
LIVE_CHUNK = 8
BATCH_CHUNK = 1024


@contextmanager
def _quiet_keras_numpy_warning():
    """Keras 3.15 converts its own variables with `np.array(self)`, which NumPy 2 flags as deprecated
    on every save and load; the warning is about Keras internals, not our arrays."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        yield


def _check_sequences(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"expected a 3-D (n, seq_len, n_features) array, got shape {X.shape}")
    return X


class LSTMMember:
    """LSTM(units) -> Dense(1, sigmoid) on (seq_len, n_features) windows; label = the window's last row.

    Inputs are standardised per feature with the training mean/std (kept in `scaler.json`, float32,
    the same float32 arithmetic for batch and single sample). Saved as `model.keras` + `scaler.json`.
    Determinism: `keras.utils.set_random_seed(seed)` seeds initialisers and shuffling (it also
    reseeds Python's and NumPy's global generators); JAX on CPU is deterministic.
    """

    name = "lstm"
    kind = "sequence"
    MODEL_FILE = "model.keras"
    SCALER_FILE = "scaler.json"

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params = member_params(self.name, "full", params)
        self.fit_seconds: float | None = None
        self.model: keras.Model | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self._forward = None
        self._trainable = None
        self._non_trainable = None
        # Rows per batch call: BATCH_CHUNK, or LIVE_CHUNK where the two shapes disagree (see `_ready`).
        self.batch_chunk = BATCH_CHUNK

    def __repr__(self) -> str:
        return f"LSTMMember({self.params})"

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        """float32 (X - mean) / std, written chunk by chunk so a sliding-window view is copied once."""
        out = np.empty(X.shape, dtype=np.float32)
        step = 8192
        for start in range(0, X.shape[0], step):
            block = X[start : start + step].astype(np.float32)
            np.subtract(block, self.mean, out=block)
            np.divide(block, self.std, out=out[start : start + step])
        return out

    def _build(self, seq_len: int, n_features: int) -> keras.Model:
        model = keras.Sequential(
            [
                keras.Input(shape=(seq_len, n_features)),
                keras.layers.LSTM(self.params["units"]),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=self.params["learning_rate"]),
            loss="binary_crossentropy",
        )
        return model

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int) -> None:
        started = time.perf_counter()
        X = _check_sequences(X)
        y = check_labels(y, X.shape[0]).astype(np.float32)
        if X.shape[1] != self.params["seq_len"]:
            raise ValueError(f"sequences have length {X.shape[1]}, params say seq_len={self.params['seq_len']}")
        keras.utils.set_random_seed(seed)
        mean = X.mean(axis=(0, 1))
        std = X.std(axis=(0, 1))
        std[~(std > 1e-12)] = 1.0  # constant (or empty) features pass through centred
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        Xs = self._standardise(X)
        self.model = self._build(X.shape[1], X.shape[2])
        self.model.fit(
            Xs,
            y,
            batch_size=self.params["batch_size"],
            epochs=self.params["epochs"],
            shuffle=True,
            verbose=0,
        )
        self._ready()
        self.fit_seconds = time.perf_counter() - started

    def _ready(self) -> None:
        """Build the jitted forward pass, compile its two shapes (so the first live bar is fast) and choose the
        batch chunk: BATCH_CHUNK if it gives, on a probe, bit for bit what LIVE_CHUNK gives, else LIVE_CHUNK."""
        model = self.model
        self._trainable = [v.value for v in model.trainable_variables]
        self._non_trainable = [v.value for v in model.non_trainable_variables]
        self._forward = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x)[0])
        _, seq_len, n_features = model.input_shape
        probe = np.random.default_rng(0).standard_normal((BATCH_CHUNK, seq_len, n_features)).astype(np.float32)
        self.batch_chunk = BATCH_CHUNK
        batched = self._run_chunks(probe, BATCH_CHUNK)
        if not np.array_equal(batched, self._run_chunks(probe, LIVE_CHUNK)):
            logger.warning("LSTM: chunks of %d and %d rows disagree on this machine; batches run in chunks of %d "
                           "(exact, slower)", BATCH_CHUNK, LIVE_CHUNK, LIVE_CHUNK)
            self.batch_chunk = LIVE_CHUNK

    def _run_chunks(self, Xs: np.ndarray, chunk: int) -> np.ndarray:
        """The forward pass over standardised float32 windows, `chunk` rows per call, the last call zero-padded."""
        n = Xs.shape[0]
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, chunk):
            block = Xs[start : start + chunk]
            rows = block.shape[0]
            if rows < chunk:
                block = np.concatenate([block, np.zeros((chunk - rows,) + block.shape[1:], np.float32)])
            p = np.asarray(self._forward(self._trainable, self._non_trainable, block))
            out[start : start + rows] = p[:rows, 0]
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = _check_sequences(X)
        n = X.shape[0]
        out = np.empty(n, dtype=np.float64)
        # Standardised a block at a time, so a sliding-window view is never copied whole.
        step = max(self.batch_chunk, 8192 // self.batch_chunk * self.batch_chunk)
        for start in range(0, n, step):
            out[start : start + step] = self._run_chunks(self._standardise(X[start : start + step]), self.batch_chunk)
        return out

    def predict_proba_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """`predict_proba` of every window of `seq_len` consecutive feature rows, (n - seq_len + 1,), the window
        ending at row t at t - seq_len + 1, with the same bits: standardising is per value, so each row is
        standardised once rather than once in each of the seq_len windows holding it."""
        rows = np.asarray(rows)
        if rows.ndim != 2:
            raise ValueError(f"expected a 2-D (n, n_features) array, got shape {rows.shape}")
        seq_len = int(self.params["seq_len"])
        if rows.shape[0] < seq_len:
            return np.empty(0, dtype=np.float64)
        windows = sliding_window_view(self._standardise(rows), seq_len, axis=0).transpose(0, 2, 1)
        return self._run_chunks(windows, self.batch_chunk)

    def predict_one(self, x: np.ndarray) -> float:
        """One (seq_len, n_features) window: the value `predict_proba` gives it in any batch."""
        return float(self._run_chunks(self._standardise(np.asarray(x)[None]), LIVE_CHUNK)[0])

    def save(self, folder: Path) -> list[str]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with _quiet_keras_numpy_warning():
            self.model.save(folder / self.MODEL_FILE)
        scaler = {"mean": self.mean.tolist(), "std": self.std.tolist()}  # float32 -> float -> float32 is exact
        (folder / self.SCALER_FILE).write_text(json.dumps(scaler))
        return [self.MODEL_FILE, self.SCALER_FILE]

    @classmethod
    def load(cls, folder: Path, params: dict) -> "LSTMMember":
        folder = Path(folder)
        member = cls(params)
        with _quiet_keras_numpy_warning():
            member.model = keras.saving.load_model(folder / cls.MODEL_FILE, compile=False)
        scaler = json.loads((folder / cls.SCALER_FILE).read_text())
        member.mean = np.asarray(scaler["mean"], dtype=np.float32)
        member.std = np.asarray(scaler["std"], dtype=np.float32)
        member._ready()
        return member
