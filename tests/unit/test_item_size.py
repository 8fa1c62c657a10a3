"""DynamoDB's item size rule (AWS developer guide, "DynamoDB item sizes and formats")."""

from decimal import Decimal

import pytest
from promptsvc.domain.errors import ItemTooLarge
from promptsvc.domain.item_size import (
    MAX_ITEM_BYTES,
    WRITE_LIMIT_BYTES,
    check_item_size,
    item_size,
    number_size,
    utf8_pieces,
    value_size,
)


def test_a_string_is_its_names_and_its_values_utf8_bytes() -> None:
    assert item_size({"id": "abc"}) == 2 + 3
    assert item_size({"name": "héllo"}) == 4 + 6  # é is 2 bytes in UTF-8
    assert item_size({"ключ": "€"}) == 8 + 3  # the name counts in UTF-8 too


@pytest.mark.parametrize(
    ("number", "size"),
    [
        (0, 2),  # one digit, rounded up, plus 1
        (7, 2),
        (12, 2),  # two significant digits: 1 byte, plus 1
        (123, 3),
        (1000, 2),  # trailing zeros are trimmed: one significant digit
        (Decimal("0.001"), 2),  # leading zeros too
        (Decimal("12345.678"), 5),  # eight significant digits: 4 bytes, plus 1
        (10**37 + 1, 20),  # 38 significant digits, DynamoDB's most: 19 bytes, plus 1
    ],
)
def test_a_number_takes_a_byte_per_two_significant_digits_plus_one(number: int | Decimal, size: int) -> None:
    assert number_size(number) == size


def test_booleans_and_null_take_one_byte() -> None:
    assert item_size({"ok": True, "no": False, "none": None}) == (2 + 1) + (2 + 1) + (4 + 1)


def test_a_binary_value_counts_its_raw_bytes() -> None:
    assert item_size({"b": b"\x00\x01\x02"}) == 1 + 3


def test_lists_and_maps_take_three_bytes_plus_one_per_element() -> None:
    assert item_size({"l": []}) == 1 + 3
    assert item_size({"m": {}}) == 1 + 3
    assert value_size(["ab", 12]) == 3 + (1 + 2) + (1 + 2)
    # a map element counts its key's name like an attribute
    assert value_size({"k": "v", "nested": {"x": True}}) == 3 + (1 + 1 + 1) + (1 + 6 + (3 + (1 + 1 + 1)))


def test_the_limit_is_400_kb_and_a_write_is_checked_a_little_below_it() -> None:
    assert MAX_ITEM_BYTES == 409_600
    assert MAX_ITEM_BYTES - 8 * 1024 <= WRITE_LIMIT_BYTES < MAX_ITEM_BYTES
    at_limit = {"a": "x" * (WRITE_LIMIT_BYTES - 1)}
    assert check_item_size(at_limit) == WRITE_LIMIT_BYTES
    with pytest.raises(ItemTooLarge) as refused:
        check_item_size({"answer": "x" * WRITE_LIMIT_BYTES, "id": "p1"})
    assert refused.value.size == WRITE_LIMIT_BYTES + len("answer") + 2 + 2
    assert "answer" in str(refused.value) and str(MAX_ITEM_BYTES) in str(refused.value)


def test_a_text_is_cut_into_pieces_within_a_byte_budget_never_inside_a_character() -> None:
    text = "a€" * 10  # 4 bytes per pair
    pieces = list(utf8_pieces(text, 5))
    assert "".join(pieces) == text
    assert all(len(piece.encode()) <= 5 for piece in pieces)
    assert pieces[:2] == ["a€a", "€a"]  # 5 bytes fit; a second € (3 more bytes) would not
    assert list(utf8_pieces("€€", 4)) == ["€", "€"]
    assert list(utf8_pieces("", 8)) == []
    assert list(utf8_pieces("abc", 8)) == ["abc"]
