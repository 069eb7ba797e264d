"""Sequence sets (RFC 9051 §9 sequence-set, RFC 5182 `$`)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbote.imap.sequence import SeqRange, SequenceSet


@pytest.mark.parametrize("text", ["1", "1:4", "*", "1:*", "*:3", "2,4:7,9,12:*", "$", "4294967295"])
def test_valid_sets_parse_and_print_back(text: str) -> None:
    assert str(SequenceSet.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "1:",
        ":1",
        "*:*x",
        "1,,2",
        ",1",
        "1,",
        "1:2:3",
        "01",
        "4294967296",
        "$,1",
        "1:$",
        "a",
    ],
)
def test_invalid_sets_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        SequenceSet.parse(text)


def test_star_means_the_highest_number_and_ranges_may_be_reversed() -> None:
    assert SequenceSet.parse("*:4").expand(10) == [(4, 10)]
    assert SequenceSet.parse("4:2").expand(10) == [(2, 4)]


def test_expand_merges_overlapping_and_adjacent_ranges_and_clips() -> None:
    assert SequenceSet.parse("5:7,1:3,4,9:20").expand(12) == [(1, 7), (9, 12)]


def test_uid_range_above_the_highest_uid_still_names_the_last_message() -> None:
    # RFC 9051 §6.4.9: "UID FETCH 5:*" with highest UID 3 is 3:5, so UID 3 is included.
    assert SequenceSet.parse("5:*").expand(3) == [(3, 3)]


def test_empty_mailbox_expands_to_nothing() -> None:
    assert SequenceSet.parse("1:*").expand(0) == []
    assert not SequenceSet.parse("*").contains(1, 0)


def test_huge_range_is_never_materialised() -> None:
    huge = SequenceSet.parse("1:4294967295")
    assert huge.count(4294967295) == 4294967295
    assert huge.contains(4000000000, 4294967295)
    assert next(huge.numbers(4294967295)) == 1


def test_contains_resolves_star() -> None:
    s = SequenceSet.parse("2,10:*")
    assert s.contains(2, 20) and s.contains(15, 20) and not s.contains(3, 20)
    assert not s.contains(21, 20)


def test_saved_result_must_be_resolved_before_expanding() -> None:
    saved = SequenceSet.parse("$")
    assert saved.saved
    with pytest.raises(ValueError):
        saved.expand(10)


def test_of_compresses_numbers() -> None:
    assert str(SequenceSet.of([9, 1, 2, 3, 5, 3])) == "1:3,5,9"
    assert SequenceSet.of([]).ranges == ()


def test_highest_explicit_ignores_star() -> None:
    assert SequenceSet.parse("3:*,7").highest_explicit() == 7
    assert SequenceSet.parse("*").highest_explicit() == 0


def test_filter_picks_members_of_a_sorted_list() -> None:
    uids = [1, 4, 9, 16, 25, 36]
    assert SequenceSet.parse("2:16,30:*").filter(uids, 36) == [4, 9, 16, 36]


def test_single_number_range_prints_as_a_number() -> None:
    assert str(SeqRange(5, 5)) == "5" and str(SeqRange(None, None)) == "*"


@given(st.sets(st.integers(1, 500), max_size=60), st.integers(0, 600))
def test_of_then_numbers_gives_back_the_members(numbers: set[int], highest: int) -> None:
    s = SequenceSet.parse(str(SequenceSet.of(numbers))) if numbers else SequenceSet.of(numbers)
    assert list(s.numbers(highest)) == sorted(n for n in numbers if n <= highest)
    assert all(s.contains(n, highest) == (n in numbers and n <= highest) for n in range(0, 610, 7))
