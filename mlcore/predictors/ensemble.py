"""One side's ensemble (members + meta-learner + calibrator): fitting, single-bar prediction, save/load; and sequence windows."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Member, member_params
from .lstm import LSTMMember
from .stacking import MetaLearner
from .trees import CatBoostMember, LightGBMMember, RandomForestMember, XGBoostMember

logger = logging.getLogger(__name__)

MEMBER_TYPES: dict[str, type] = {
    LSTMMember.name: LSTMMember,
    XGBoostMember.name: XGBoostMember,
    LightGBMMember.name: LightGBMMember,
    RandomForestMember.name: RandomForestMember,
    CatBoostMember.name: CatBoostMember,
}
# The order of the meta-learner's inputs and of the saved manifest.
MEMBER_ORDER: tuple[str, ...] = ("lstm", "xgboost", "lightgbm", "random_forest", "catboost")

MANIFEST = "side.json"
MANIFEST_FORMAT = 1


class Calibrator(Protocol):
    """What a SideModel needs from a calibrator (mlcore/domain/calibration.py supplies them)."""

    def transform(self, p: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict: ...


def make_sequences(X: np.ndarray, seq_len: int) -> np.ndarray:
    """Sliding windows of `seq_len` consecutive rows: (n - seq_len + 1, seq_len, n_features), a read-only view.

    Window i holds rows i .. i + seq_len - 1, so its label is the label of row i + seq_len - 1 (the
    caller aligns: `y[seq_len - 1:]`, and row features `X[seq_len - 1:]`). No copy is made here;
    the LSTM copies once, in float32, when it standardises.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D (n, n_features) array, got shape {X.shape}")
    if not 1 <= seq_len <= X.shape[0]:
        raise ValueError(f"seq_len={seq_len} needs 1 <= seq_len <= n rows ({X.shape[0]})")
    return sliding_window_view(X, seq_len, axis=0).transpose(0, 2, 1)


def make_member(name: str, preset: str = "full", overrides: Mapping[str, Any] | None = None) -> Member:
    if name not in MEMBER_TYPES:
        raise ValueError(f"unknown member {name!r}; known: {sorted(MEMBER_TYPES)}")
    return MEMBER_TYPES[name](member_params(name, preset, overrides))


def _check_aligned(X_rows: np.ndarray | None, X_seqs: np.ndarray | None, n: int | None = None) -> int:
    sizes = {len(a) for a in (X_rows, X_seqs) if a is not None}
    if n is not None:
        sizes.add(n)
    if len(sizes) != 1:
        raise ValueError(f"rows, sequences and labels must be aligned, got lengths {sorted(sizes)}")
    return sizes.pop()


def fit_members(
    X_rows: np.ndarray,
    X_seqs: np.ndarray,
    y: np.ndarray,
    *,
    preset: str = "full",
    seed: int,
    names: Sequence[str] = MEMBER_ORDER,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Member]:
    """Fit every member (in `names` order) on aligned rows / sequences / labels; same seed, same members.

    `X_rows[i]`, `X_seqs[i]` (ending at that row) and `y[i]` describe the same bar. Each member's
    wall-clock fit time is logged and left on `member.fit_seconds`.
    """
    _check_aligned(X_rows, X_seqs, len(y))
    overrides = overrides or {}
    return [fit_member(name, X_rows, X_seqs, y, preset=preset, seed=seed, overrides=overrides.get(name))
            for name in names]


def fit_member(
    name: str,
    X_rows: np.ndarray | None,
    X_seqs: np.ndarray | None,
    y: np.ndarray,
    *,
    preset: str = "full",
    seed: int,
    overrides: Mapping[str, Any] | None = None,
) -> Member:
    """Fit one member, as `fit_members` fits each: a row member needs only `X_rows`, a sequence member only
    `X_seqs` (the other may be None, so a caller fitting one member need not gather both)."""
    member = make_member(name, preset, overrides)
    X = X_seqs if member.kind == "sequence" else X_rows
    if X is None:
        needed = "X_seqs" if member.kind == "sequence" else "X_rows"
        raise ValueError(f"{name} is a {member.kind} member: it needs {needed}")
    member.fit(X, y, seed=seed)
    logger.info("fitted %s (%s preset) on %d samples in %.2f s", name, preset, len(y), member.fit_seconds)
    return member


def predict_members(members: Sequence[Member], X_rows: np.ndarray, X_seqs: np.ndarray,
                    *, seconds: dict[str, float] | None = None) -> np.ndarray:
    """Batch member probabilities, (n, n_members) in `members` order: the meta-learner's input.

    Each member's value for a row is the one its `predict_one` gives that row alone. With `seconds`, each
    member's wall-clock time is added to `seconds[name]`.
    """
    n = _check_aligned(X_rows, X_seqs)
    P = np.empty((n, len(members)), dtype=np.float64)
    for j, member in enumerate(members):
        started = time.perf_counter()
        P[:, j] = member.predict_proba(X_seqs if member.kind == "sequence" else X_rows)
        if seconds is not None:
            seconds[member.name] = seconds.get(member.name, 0.0) + time.perf_counter() - started
    return P


class SideModel:
    """Everything that turns one bar into the calibrated P(take-profit first) for one side (long or short).

    `calibrator` is any object with `.transform(np.ndarray) -> np.ndarray` and `.to_dict()`; with
    none, the calibrated probability is the meta-learner's raw one.
    """

    def __init__(
        self,
        members: Sequence[Member],
        meta: MetaLearner,
        calibrator: Calibrator | None = None,
        *,
        side: str = "long",
        preset: str | None = None,
        n_features: int | None = None,
    ):
        names = [m.name for m in members]
        if meta.member_names and meta.member_names != names:
            raise ValueError(f"meta-learner expects members {meta.member_names}, got {names}")
        self.members = list(members)
        self.meta = meta
        self.calibrator = calibrator
        self.side = side
        self.preset = preset
        self.n_features = n_features

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def seq_len(self) -> int | None:
        for member in self.members:
            if member.kind == "sequence":
                return int(member.params["seq_len"])
        return None

    def calibrate(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        return p if self.calibrator is None else np.asarray(self.calibrator.transform(p), dtype=np.float64)

    def predict_one(self, x_row: np.ndarray, x_seq: np.ndarray | None) -> dict:
        """One bar: {"members": {name: p}, "member_ms": {name: milliseconds}, "meta_raw": p, "calibrated": p}.

        `x_row` is the bar's feature row (1-D), `x_seq` the (seq_len, n_features) window ending at it.
        """
        p = np.empty(len(self.members), dtype=np.float64)
        spent = np.empty(len(self.members), dtype=np.float64)
        for j, member in enumerate(self.members):
            started = time.perf_counter()
            p[j] = member.predict_one(x_seq if member.kind == "sequence" else x_row)
            spent[j] = (time.perf_counter() - started) * 1000.0
        raw = self.meta.predict_one(p)
        calibrated = raw if self.calibrator is None else float(self.calibrate(np.array([raw]))[0])
        return {"members": dict(zip(self.member_names, p.tolist())),
                "member_ms": dict(zip(self.member_names, spent.tolist())), "meta_raw": raw, "calibrated": calibrated}

    def predict_proba(self, X_rows: np.ndarray, X_seqs: np.ndarray, *, seconds: dict[str, float] | None = None) -> dict:
        """Batch: {"members": (n, m) array, "meta_raw": (n,), "calibrated": (n,)}, row for row the values
        `predict_one` gives (the same bits). `seconds` as for `predict_members`."""
        P = predict_members(self.members, X_rows, X_seqs, seconds=seconds)
        raw = self.meta.predict_proba(P)
        return {"members": P, "meta_raw": raw, "calibrated": self.calibrate(raw)}

    def save(self, folder: Path) -> list[str]:
        """Each member into `folder/<member name>/` in its native format, plus `side.json`; returns relative paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written, entries = [], []
        for member in self.members:
            files = member.save(folder / member.name)
            written += [f"{member.name}/{f}" for f in files]
            entries.append({"name": member.name, "kind": member.kind, "params": member.params, "files": files,
                            "fit_seconds": member.fit_seconds})
        calibrator = None
        if self.calibrator is not None:
            cls = type(self.calibrator)
            calibrator = {"type": f"{cls.__module__}.{cls.__qualname__}", "state": self.calibrator.to_dict()}
        manifest = {
            "format": MANIFEST_FORMAT,
            "side": self.side,
            "preset": self.preset,
            "n_features": self.n_features,
            "seq_len": self.seq_len,
            "members": entries,
            "meta": self.meta.to_dict(),
            "calibrator": calibrator,
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return written + [MANIFEST]

    @classmethod
    def load(cls, folder: Path, *, calibrator_from_dict: Callable[[dict], Calibrator] | None = None) -> "SideModel":
        """Rebuild a saved side model. A saved calibrator needs `calibrator_from_dict` (e.g. `SomeCalibrator.from_dict`)."""
        folder = Path(folder)
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{folder / MANIFEST}: unsupported format {manifest.get('format')!r}")
        members = []
        for entry in manifest["members"]:
            member_type = MEMBER_TYPES.get(entry["name"])
            if member_type is None:
                raise ValueError(f"{folder / MANIFEST}: unknown member {entry['name']!r}")
            member = member_type.load(folder / entry["name"], entry["params"])
            member.fit_seconds = entry.get("fit_seconds")
            members.append(member)
        calibrator = None
        if manifest["calibrator"] is not None:
            if calibrator_from_dict is None:
                raise ValueError(
                    f"{folder / MANIFEST} holds a calibrator of type {manifest['calibrator']['type']}; "
                    "pass calibrator_from_dict to load it"
                )
            calibrator = calibrator_from_dict(manifest["calibrator"]["state"])
        return cls(
            members,
            MetaLearner.from_dict(manifest["meta"]),
            calibrator,
            side=manifest["side"],
            preset=manifest["preset"],
            n_features=manifest["n_features"],
        )


def fit_seconds(members: Sequence[Member]) -> dict[str, float | None]:
    """{member name: fit seconds}, for training benchmarks."""
    return {m.name: m.fit_seconds for m in members}


__all__ = [
    "MEMBER_ORDER",
    "MEMBER_TYPES",
    "Calibrator",
    "SideModel",
    "fit_member",
    "fit_members",
    "fit_seconds",
    "make_member",
    "make_sequences",
    "predict_members",
]
