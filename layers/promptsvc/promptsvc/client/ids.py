"""Prompt ids made by the client, so that a retried add is the same add (the API returns the stored
prompt for a re-added id with the same body). ULIDs, like the server's own (`prm_` + 26 characters
of Crockford base32: 48 bits of milliseconds, 80 random bits), made with the standard library."""

import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_prompt_id() -> str:
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    text = "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))
    return f"prm_{text}"
