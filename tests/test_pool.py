"""The worker pool: results in order, and a hung, dead or failing item costs only that item (None), its worker
replaced, the pool going on."""

from __future__ import annotations

import pytest

from quantum_ft.utils.pool import WorkerPool

FUNCTION = "tests.pool_functions:behave"


@pytest.fixture(scope="module")
def pool():
    started = WorkerPool.pools_started
    p = WorkerPool(FUNCTION, workers=2, timeout_s=3.0)
    assert WorkerPool.pools_started == started + 1
    yield p
    p.close()


def test_results_come_back_in_order_from_both_workers(pool) -> None:
    out = pool.map([{"value": i} for i in range(12)])
    assert [r["value"] for r in out] == list(range(12))
    assert len({r["pid"] for r in out}) == 2


def test_a_hung_item_is_cut_at_its_deadline_and_its_worker_replaced(pool) -> None:
    before = pool.stats.timeouts, pool.stats.replaced
    out = pool.map([{"value": 1}, {"action": "hang"}, {"value": 3}, {"value": 4}])
    assert out[1] is None and [out[0]["value"], out[2]["value"], out[3]["value"]] == [1, 3, 4]
    assert (pool.stats.timeouts, pool.stats.replaced) == (before[0] + 1, before[1] + 1)
    assert pool.size == 2 and [r["value"] for r in pool.map([{"value": 5}, {"value": 6}])] == [5, 6]


def test_a_dead_worker_and_a_raising_function_cost_one_item_each(pool) -> None:
    crashes = pool.stats.crashes
    out = pool.map([{"action": "die"}, {"value": 2}, {"action": "raise"}, {"action": "print", "value": 4}])
    assert out[0] is None and out[2] is None
    assert out[1]["value"] == 2 and out[3]["value"] == 4
    assert pool.stats.crashes == crashes + 1


def test_submit_returns_at_once_and_overlaps_the_caller(pool) -> None:
    future = pool.submit([{"value": i} for i in range(4)])
    assert [r["value"] for r in future.result(timeout=30)] == [0, 1, 2, 3]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        WorkerPool(FUNCTION, workers=0)
    with pytest.raises(ValueError, match="timeout_s"):
        WorkerPool(FUNCTION, timeout_s=0)
