"""Ids the service makes: ULIDs, each greater than any this process made before (ULIDs made in the
same millisecond are otherwise random among themselves), so an order by id is an order by
creation. Prompts and threads carry a prefix naming what they are (`prm_...`, `thr_...`)."""

import threading

import ulid

_last = 0
_lock = threading.Lock()


def new_id(prefix: str = "") -> str:
    global _last
    with _lock:
        value = max(int(ulid.ULID()), _last + 1)
        _last = value
    text = str(ulid.ULID.from_int(value))
    return f"{prefix}_{text}" if prefix else text
