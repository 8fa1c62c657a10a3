"""domain.reads.Reads: how a list pass sizes its reads and keeps within its budget."""

from promptsvc.domain.reads import Reads


def test_a_read_takes_what_the_page_lacks_while_everything_matches() -> None:
    lacking = 21
    reads = Reads(1000, lacking=lambda: lacking)
    assert reads.grant() == 21
    for _ in range(10):
        reads.saw(True)
    lacking = 11
    assert reads.grant() == 11


def test_a_read_grows_with_how_few_matched() -> None:
    reads = Reads(1000, lacking=lambda: 20)
    reads.took(reads.grant(), 20)
    for _ in range(20):
        reads.saw(False)
    assert reads.grant() == 20 * 21  # none of 20 matched: 21 times as many


def test_reads_together_share_one_grant_and_unused_items_come_back() -> None:
    reads = Reads(100)
    each = reads.grant(4)
    assert each == 25 and reads.left == 0
    reads.took(each, 5)  # that partition had only 5
    assert reads.left == 20 and reads.read == 5
    assert reads.grant() == 20


def test_a_spent_budget_refuses_and_says_so() -> None:
    reads = Reads(10, lacking=lambda: 50)
    assert reads.grant() == 10
    reads.took(10, 10)
    assert not reads.denied
    assert reads.grant() == 0 and reads.denied


def test_a_look_ahead_comes_from_the_budget_when_it_has_some() -> None:
    reads = Reads(3)
    assert reads.grant() == 3
    assert reads.extra() == 0
    reads.took(3, 1)
    assert reads.extra() == 1 and reads.left == 1
