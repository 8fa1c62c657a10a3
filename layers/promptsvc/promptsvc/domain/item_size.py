"""DynamoDB's item size rule, so adapters refuse a write DynamoDB would refuse before sending it.

The sizing is AWS's ("DynamoDB item sizes and formats", developer guide): an item's size is the sum
of its attributes', each the UTF-8 length of its name plus its value's size:

- a string: its UTF-8 length; a binary: its raw length;
- a number: 1 byte per two significant digits (leading and trailing zeros trimmed) plus 1;
- a boolean or null: 1 byte;
- a list or map: 3 bytes plus, per element, 1 byte plus the element's size (a map element's
  size includes its key's UTF-8 length); a set: the sum of its elements' sizes.

An item may hold at most 400 KB (409,600 bytes). The number rule is approximate in AWS's words,
so writers check against a limit a little below it (`WRITE_LIMIT_BYTES`).
"""

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from promptsvc.domain.errors import ItemTooLarge

MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's limit (1 KB = 1024 bytes in its documentation)
# What a checked write may reach: room for the small fields written without a check (a claim's
# lease and times, the TTL stamp) and for the approximate number sizing.
WRITE_LIMIT_BYTES = MAX_ITEM_BYTES - 4 * 1024


def number_size(value: int | float | Decimal) -> int:
    """1 byte per two significant digits (rounded up), plus 1."""
    digits = Decimal(str(value)).as_tuple().digits
    significant = "".join(map(str, digits)).strip("0")
    return -(-max(len(significant), 1) // 2) + 1


def value_size(value: Any) -> int:
    """The size of an attribute value, without its name."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, int | float | Decimal):
        return number_size(value)
    if isinstance(value, Mapping):
        return 3 + sum(1 + len(str(k).encode()) + value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(1 + value_size(v) for v in value)
    if isinstance(value, set | frozenset):
        return sum(value_size(v) for v in value)
    raise TypeError(f"not a DynamoDB value: {type(value).__name__}")


def item_size(item: Mapping[str, Any]) -> int:
    """The size DynamoDB counts against its 400 KB limit for an item (attribute name -> value)."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def check_item_size(item: Mapping[str, Any], limit: int = WRITE_LIMIT_BYTES) -> int:
    """The item's size; ItemTooLarge when it is over `limit`, naming the largest attributes."""
    size = item_size(item)
    if size > limit:
        largest = sorted(item, key=lambda name: value_size(item[name]), reverse=True)[:3]
        raise ItemTooLarge(
            f"the item would be {size} bytes, over the {limit} bytes a write may reach "
            f"(DynamoDB's limit is {MAX_ITEM_BYTES}); largest attributes: {', '.join(largest)}",
            size=size,
        )
    return size


def utf8_pieces(text: str, max_bytes: int) -> Iterator[str]:
    """`text` cut into consecutive pieces of at most `max_bytes` UTF-8 bytes each, never inside a
    character (so each piece, like the whole, is valid text)."""
    if max_bytes < 4:
        raise ValueError("max_bytes must hold a whole UTF-8 character (4 bytes)")
    start, size = 0, 0
    for index, char in enumerate(text):
        width = len(char.encode("utf-8", "surrogatepass"))
        if size + width > max_bytes:
            yield text[start:index]
            start, size = index, 0
        size += width
    if start < len(text):
        yield text[start:]
