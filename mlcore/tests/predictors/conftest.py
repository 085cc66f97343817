"""Members fitted once per session with the fast preset, on the synthetic data."""
import pytest

from mlcore.predictors import MEMBER_ORDER, fit_members

from .synthetic import OVERRIDES, SEED, Data


@pytest.fixture(scope="session")
def data() -> Data:
    return Data()


@pytest.fixture(scope="session")
def fitted(data) -> dict:
    """{member name: member} fitted through fit_members, fast preset, SEED."""
    members = fit_members(data.rows_train, data.seqs_train, data.y_train, preset="fast", seed=SEED, overrides=OVERRIDES)
    assert [m.name for m in members] == list(MEMBER_ORDER)
    return {m.name: m for m in members}
