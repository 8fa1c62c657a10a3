"""Fair queueing's lane rule (domain/lanes.py), pure."""

import pytest
from promptsvc.domain.lanes import Lane, admits, holds_fast_slot, lane_for, lane_item
from promptsvc.domain.status import Status


@pytest.mark.parametrize(
    ("in_fast_lane", "per_user", "lane"),
    [
        (0, 0, Lane.NONE),
        (5, 0, Lane.NONE),
        (0, 1, Lane.FAST),
        (1, 1, Lane.BULK),
        (9, 10, Lane.FAST),
        (10, 10, Lane.BULK),
        (11, 10, Lane.BULK),
    ],
)
def test_a_user_gets_the_fast_lane_below_its_share_and_the_bulk_lane_at_it(
    in_fast_lane: int, per_user: int, lane: Lane
) -> None:
    assert lane_for(in_fast_lane, per_user) is lane
    assert admits(in_fast_lane, per_user) is (lane is Lane.FAST)


def test_only_an_unfinished_fast_lane_prompt_holds_a_slot() -> None:
    assert holds_fast_slot("fast", Status.SCHEDULED)
    assert holds_fast_slot("fast", Status.RUNNING)
    assert holds_fast_slot("fast", Status.ERRORED)  # waiting out a retry's backoff: still in the lane
    for ended in (Status.COMPLETED, Status.ABANDONED, Status.CANCELED):
        assert not holds_fast_slot("fast", ended)
    assert not holds_fast_slot("bulk", Status.SCHEDULED)
    assert not holds_fast_slot("", Status.SCHEDULED)


def test_each_user_has_its_own_counter_apart_from_the_keys_counters() -> None:
    assert lane_item("alice") != lane_item("bob")
    assert lane_item("alice").startswith("lane#")
