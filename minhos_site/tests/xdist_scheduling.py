"""How `pytest -n 2` shares the suite between its workers: xdist's `load`, with a few units kept whole or run early.

- Tests that share a model fitted by a module- or session-scoped fixture run on one worker, so it is fitted once
  per pass, not once on each worker that gets some of them (the planted-signal model alone is ~30 s). xdist's own
  `--dist loadgroup` would do this from `xdist_group` marks, but it passes the group by rewriting node ids, which
  pytest 9.2 no longer allows: the marks are silently ignored (pytest-dev/pytest-xdist#1386).
- The longest tests start early, so a pass does not end with one worker alone on them.

The order has one rule to keep: pytest-django runs the tests in database transactions first and the transactional
ones (which empty the database, rows seeded by migrations included) after them, and each worker must keep that
order on its own database. Only tests that are not transactional are moved ahead of others (checked at collection);
the soak, transactional, is moved to the front of its kind only (before pytest-django's stable sort).
Every test collected still runs, once, as with `load`.
"""
from __future__ import annotations

import pytest
from pytest_django.plugin import validate_django_db
from xdist.scheduler import LoadScopeScheduling

# Path prefix of the tests -> the unit they form (none transactional: they may run first). Every other test is a
# unit of its own, as with `load`. Units of several tests go first (xdist's --loadscope-reorder, on by default).
UNITS = {
    "mlcore/tests/pipeline/test_planted_signal.py": "planted-signal model",
    "mlcore/tests/pipeline/test_random_walk.py": "random-walk model",
    # They use small_model(0), cached per process.
    "mlcore/tests/pipeline/test_determinism.py": "small pipeline model",
    "mlcore/tests/pipeline/test_no_lookahead.py": "small pipeline model",
    "mlcore/tests/pipeline/test_training_units.py": "small pipeline model",
    # The session's `trained` model (mlcore/tests/conftest.py); test_training_queue, transactional, stays out.
    "mlcore/tests/services/": "session model",
    "mlcore/tests/edges/test_admin.py": "session model",
    "mlcore/tests/edges/test_api.py": "session model",
    "mlcore/tests/edges/test_models_command.py": "session model",
}
# Path prefixes of long tests (not transactional) handed out before anything else.
FIRST = ("trading/tests/edges/test_start_command.py",)
# Path prefixes of long tests put first among the tests of their kind (database use), wherever that kind comes.
FIRST_OF_THEIR_KIND = ("trading/tests/services/test_soak_multi_day.py",
                       "trading/tests/services/test_backtest_parity.py")


def unit_of(nodeid: str) -> str:
    for prefix, unit in UNITS.items():
        if nodeid.startswith(prefix):
            return unit
    return nodeid


class SuiteScheduling(LoadScopeScheduling):
    """LoadScopeScheduling with the units above, the FIRST tests handed out before everything."""

    _first_moved = False

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _assign_work_unit(self, node) -> None:
        if not self._first_moved:  # the work queue is complete by the first assignment
            self._first_moved = True
            for unit in reversed([unit for unit in self.workqueue if unit.startswith(FIRST)]):
                self.workqueue.move_to_end(unit, last=False)
        super()._assign_work_unit(node)


def transactional(item: pytest.Item) -> bool:
    """pytest-django's rule for the tests it runs after the others."""
    marker = item.get_closest_marker("django_db")
    if marker is not None:
        transaction, reset_sequences, *_ = validate_django_db(marker)
        if transaction or reset_sequences:
            return True
    return bool({"transactional_db", "live_server"} & set(getattr(item, "fixturenames", ())))


def order_items(items: list[pytest.Item]) -> None:
    """In each worker, before pytest-django sorts the tests by their use of the database (a stable sort): refuse
    a transactional test among those moved ahead, and put FIRST_OF_THEIR_KIND at the front."""
    for item in items:
        if item.nodeid.startswith((*UNITS, *FIRST)) and transactional(item):
            raise pytest.UsageError(f"{item.nodeid} is transactional (it empties the database), so "
                                    "minhos_site/tests/xdist_scheduling.py must not move it ahead of other tests: "
                                    "take it out of UNITS / FIRST")
    items.sort(key=lambda item: not item.nodeid.startswith(FIRST_OF_THEIR_KIND))
