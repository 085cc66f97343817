import pytest

from trading.tests.decisions import user_with
from trading.tests.factories import InstrumentFactory


@pytest.fixture
def nq(db):
    # The migration seeds NQ; transactional tests flush it, and the factory makes it again with the same terms.
    return InstrumentFactory(symbol="NQ", name="E-mini Nasdaq-100")


@pytest.fixture
def trader(db):
    return user_with("trader", "trading.approve_recommendation")


@pytest.fixture
def viewer(db):
    return user_with("viewer")
