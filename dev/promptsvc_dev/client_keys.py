"""`promptsvc keys list | update | rotate | revoke`: API keys through the API (the SDK), with the key of
`--key`/$PROMPTSVC_API_KEY (an admin's lists and rotates any key, a user's their own).

`keys create` (cli.py) writes to the keys table instead: that is how the first key of a stack is
made. Like client_cli.py, this imports nothing of the server.
"""

import argparse
import json
import sys
from typing import Any

from promptsvc.client import Client, KeyLimits
from promptsvc.client.calls import KEEP

from promptsvc_dev import client_connection
from promptsvc_dev.client_cli import run
from promptsvc_dev.client_output import as_json, table

KEY_HEADER = ["KEY ID", "PREFIX", "USER", "ROLE", "STATE", "CREATED", "LAST USED", "EXPIRES", "MODELS"]


def _list(client: Client, args: argparse.Namespace) -> int:
    keys = list(client.list_keys(args.user, None if args.limit <= 0 else args.limit))
    if args.json:
        print(as_json(keys))
        return 0
    rows = [
        [
            k.key_id,
            k.prefix or "-",
            k.user_id,
            k.role,
            k.state,
            k.created_at[:19],
            (k.last_used_at or "-")[:19],
            (k.expires_at or "never")[:19],
            ",".join(k.allowed_models) if k.allowed_models is not None else "all",
        ]
        for k in keys
    ]
    print(table(KEY_HEADER, rows))
    return 0


def _rotate(client: Client, args: argparse.Namespace) -> int:
    rotated = client.rotate_key(args.key_id, args.grace)
    if args.json:
        print(json.dumps(rotated.model_dump(by_alias=True), indent=2))
    else:
        print(rotated.key)
    print(
        f"new secret for key {rotated.key_id}; shown once, store it now. The old one works until "
        f"{rotated.grace_ends_at}",
        file=sys.stderr,
    )
    return 0


LIMIT_FLAGS = (  # flag, KeyLimits field, help
    ("--rpm", "requests_per_minute", "requests a minute"),
    ("--in-flight", "prompts_in_flight", "prompts not yet finished at once"),
    ("--tokens-per-day", "tokens_per_day", "prompt + completion tokens a UTC day"),
)


DEFAULT = "default"


def limit_value(text: str) -> int | str:
    """A limit flag's value: a number (0: unlimited) or `default` (the deployment's)."""
    if text == DEFAULT:
        return DEFAULT
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number (0 is unlimited) or 'default'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: not negative (0 is unlimited)")
    return value


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    for flag, _, meaning in LIMIT_FLAGS:
        parser.add_argument(
            flag, type=limit_value, metavar="N", help=f"{meaning}: N (0: unlimited) or 'default'"
        )


def limits_given(args: argparse.Namespace) -> dict[str, int | None]:
    """The limits the flags set, by KeyLimits field (None: back to the default); a flag not given
    is absent."""
    given: dict[str, int | None] = {}
    for flag, field, _ in LIMIT_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            given[field] = None if value == DEFAULT else int(value)
    return given


def _update(client: Client, args: argparse.Namespace) -> int:
    given = limits_given(args)
    models = KEEP if args.models is None else (None if args.models == "all" else args.models.split(","))
    expires = KEEP if args.expires is None else (None if args.expires == "never" else args.expires)
    limits = KeyLimits(**given) if given else KEEP
    key = client.update_key(args.key_id, expires_at=expires, allowed_models=models, limits=limits)
    if args.json:
        print(json.dumps(key.model_dump(by_alias=True), indent=2))
        return 0
    own = key.limits.model_dump() if key.limits else {}
    limits_shown = (
        ", ".join(f"{name}={'default' if v is None else v}" for name, v in own.items()) or "defaults"
    )
    models_shown = ",".join(key.allowed_models) if key.allowed_models is not None else "all"
    print(f"{key.key_id}: expires {key.expires_at or 'never'}; models {models_shown}; limits {limits_shown}")
    return 0


def _revoke(client: Client, args: argparse.Namespace) -> int:
    client.revoke_key(args.key_id)
    print(f"revoked {args.key_id}", file=sys.stderr)
    return 0


def add_commands(keys: "argparse._SubParsersAction[argparse.ArgumentParser]", revoke_on_table: Any) -> None:
    """`list`, `rotate`, `revoke` under `promptsvc keys`. `revoke_on_table(args)`: what `revoke
    --table` runs (writing to the table, as `create` does: for when no admin key is at hand)."""
    connection = argparse.ArgumentParser(add_help=False)
    client_connection.add_arguments(connection)
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON (the API's field names)")

    listing = keys.add_parser(
        "list", parents=[connection, output], help="API keys: yours, or (an admin) every key or --user's"
    )
    listing.add_argument("--user", help="admin: only this user's keys")
    listing.add_argument("--limit", type=int, default=0, help="at most this many (default 0: all)")
    listing.set_defaults(func=lambda args: run(_list, args))

    update = keys.add_parser(
        "update", parents=[connection, output], help="an admin changes a key's expiry, models or limits"
    )
    update.add_argument("key_id")
    add_limit_flags(update)
    update.add_argument("--models", help="comma-separated catalog model ids, or 'all'")
    update.add_argument("--expires", help="RFC 3339 time (e.g. 2030-01-31T00:00:00Z), or 'never'")
    update.set_defaults(func=lambda args: run(_update, args))

    rotate = keys.add_parser(
        "rotate", parents=[connection, output], help="a new secret for a key (printed once)"
    )
    rotate.add_argument("key_id")
    rotate.add_argument(
        "--grace", type=int, default=None, help="seconds the old secret keeps working (default 3600)"
    )
    rotate.set_defaults(func=lambda args: run(_rotate, args))

    revoke = keys.add_parser("revoke", parents=[connection], help="revoke a key by its key id")
    revoke.add_argument("key_id")
    revoke.add_argument("--table", help="write to this keys table directly instead of calling the API")
    revoke.set_defaults(func=lambda args: revoke_on_table(args) if args.table else run(_revoke, args))
