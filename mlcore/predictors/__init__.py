"""The ensemble's predictors: LSTM, XGBoost, LightGBM, RandomForest, CatBoost, the stacked meta-learner, the per-side bundle (no Django)."""
import os

# The one place the Keras backend is chosen, before anything imports keras. JAX, because on this
# 2-core CPU it trains the small LSTM about twice as fast as the torch backend and answers one
# sample in tens to ~170 µs through a jitted `stateless_call` (torch: 2.5-4 ms), and TensorFlow
# would add 1.6 GB. `setdefault` lets an explicit environment win; lstm.py then refuses anything
# but JAX, because its fast path is a `jax.jit` function.
os.environ.setdefault("KERAS_BACKEND", "jax")

from .base import PRESETS, Member, member_params  # noqa: E402
from .ensemble import (  # noqa: E402
    MEMBER_ORDER,
    MEMBER_TYPES,
    SideModel,
    fit_members,
    make_member,
    make_sequences,
    predict_members,
)
from .lstm import LSTMMember  # noqa: E402
from .stacking import MetaLearner, agreement, decide  # noqa: E402
from .trees import CatBoostMember, LightGBMMember, RandomForestMember, XGBoostMember  # noqa: E402

__all__ = [
    "PRESETS",
    "MEMBER_ORDER",
    "MEMBER_TYPES",
    "CatBoostMember",
    "LSTMMember",
    "LightGBMMember",
    "Member",
    "MetaLearner",
    "RandomForestMember",
    "SideModel",
    "XGBoostMember",
    "agreement",
    "decide",
    "fit_members",
    "make_member",
    "make_sequences",
    "member_params",
    "predict_members",
]
