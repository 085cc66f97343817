"""The memory shell leaves the objects alive before a run out of the garbage collector's passes while it runs (they
cost the engine a third of its time), and gives them back when the run ends, failed or not."""
import gc

import pytest

from trading import backtest_memory

pytestmark = pytest.mark.embedded


def test_the_heap_is_frozen_during_a_run_and_released_after_it_even_when_it_fails():
    seen = []
    with pytest.raises(RuntimeError, match="the engine failed"):
        with backtest_memory._heap_frozen():
            seen.append(gc.get_freeze_count())
            raise RuntimeError("the engine failed")
    assert seen[0] > 0
    assert gc.get_freeze_count() == 0
