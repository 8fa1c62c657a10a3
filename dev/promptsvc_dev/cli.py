"""The `promptsvc` command: `promptsvc dev` runs the service locally; `promptsvc keys create` makes a
key in the keys table (the first key of a stack), `keys list | rotate | revoke` go through the API;
`promptsvc prompt`, `prompts`, `thread`, `models`, `registry` and `usage` are clients of a running service
(client_cli.py: they need only the client's dependencies, so nothing of the server is imported at the
top here)."""

import argparse
import os
import sys

from promptsvc.domain.keys import Role

DEFAULT_HOST = "127.0.0.1"
SERVER_COMMANDS = {"dev", "worker", "keys"}  # the others are clients: client_cli.py
WORKER_HELP = "run the queue consumer as a long-lived process (ECS GPU; also promptsvc-worker)"


def _dev(args: argparse.Namespace) -> int:
    from promptsvc_dev.dev import DevOptions, run

    run(
        DevOptions(
            host=args.host,
            port=args.port,
            ws_port=args.ws_port,
            callback_port=args.callback_port,
            moto_port=args.moto_port,
            api_key=args.api_key,
            engine=args.engine,
            mock_chunk_delay=args.mock_chunk_delay,
            sync_wait_seconds=args.sync_wait,
            chaos=args.chaos,
        )
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    # Its options are parsed here, not in build_parser: worker_main imports the whole server.
    from promptsvc.worker_main import add_arguments, run

    parser = argparse.ArgumentParser(prog="promptsvc worker", description=WORKER_HELP)
    add_arguments(parser)
    options = parser.parse_args(args.worker_options)
    run(options.concurrency, options.drain_seconds)
    return 0


def _target_keys_table(args: argparse.Namespace) -> str:
    """--table, else the ApiKeysTableName output of the deployed --stack, else KEYS_TABLE from the
    environment, else the table of a running `promptsvc dev`."""
    if args.table:
        return str(args.table)
    if args.stack:
        from promptsvc.adapters.clients import client

        stack = client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if "ApiKeysTableName" not in outputs:
            raise SystemExit(f"stack {args.stack!r} has no ApiKeysTableName output (is it promptsvc's?)")
        return outputs["ApiKeysTableName"]
    if os.environ.get("KEYS_TABLE"):
        return os.environ["KEYS_TABLE"]
    from promptsvc_dev.dev import aws_environment, read_state

    state = read_state()
    if state is None:
        raise SystemExit(
            "no keys table: give --stack STACK_NAME (or --table, or KEYS_TABLE) and AWS credentials "
            "for a deployed stack, or start `promptsvc dev` in this checkout first"
        )
    os.environ.update(aws_environment(state["endpoint"]))
    return state["keysTable"]


def _keys_create(args: argparse.Namespace) -> int:
    from promptsvc.adapters.key_table import DynamoKeyRepository
    from promptsvc.domain.keys import generate_key
    from promptsvc.domain.limits import KeyLimits
    from promptsvc.services.keys import KeyService

    from promptsvc_dev.client_keys import limits_given

    table = _target_keys_table(args)
    key, parsed = generate_key()
    role = Role.ADMIN if args.admin else Role.USER
    limits = KeyLimits(**limits_given(args))
    models = None if args.models in (None, "all") else args.models.split(",")
    KeyService(DynamoKeyRepository(table)).bootstrap(
        key, args.user, role, expires_at=args.expires, models=models, limits=limits
    )
    print(key)
    print(
        f"key id {parsed.key_id} for user {args.user!r} ({role}); shown once, store it now", file=sys.stderr
    )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from promptsvc.adapters.key_table import DynamoKeyRepository

    if not DynamoKeyRepository(_target_keys_table(args)).delete(args.key_id):
        print(f"no key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptsvc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run the whole service locally on moto")
    dev.add_argument("--host", default=DEFAULT_HOST, help="API listen address (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8080, help="API port (default 8080)")
    dev.add_argument("--ws-port", type=int, default=8081, help="WebSocket API port (default 8081)")
    dev.add_argument(
        "--callback-port",
        type=int,
        default=0,
        help="port of the @connections callback API, WEBSOCKET_ENDPOINT (default: a free one)",
    )
    dev.add_argument(
        "--moto-port", type=int, default=0, help="port of the embedded moto (default: a free one)"
    )
    dev.add_argument(
        "--api-key",
        default=None,
        help="admin API key to create (default: $PROMPTSVC_API_KEY, else generated)",
    )
    dev.add_argument("--engine", default="mock", help="serve every model with this engine (default mock)")
    dev.add_argument(
        "--mock-chunk-delay", type=float, default=None, help="seconds between mock engine chunks"
    )
    dev.add_argument("--sync-wait", type=float, default=None, help="seconds a sync add waits (default 25)")
    dev.add_argument(
        "--chaos",
        default=os.environ.get("PROMPTSVC_CHAOS", ""),
        metavar="SPEC",
        help="inject faults (promptsvc_dev/chaos.py): 'all' and/or name=value pairs, "
        "e.g. 'all,seed=7,kill=0' (default: $PROMPTSVC_CHAOS, else none)",
    )
    dev.set_defaults(func=_dev)

    worker = commands.add_parser("worker", help=WORKER_HELP + " (--help: its options)", add_help=False)
    worker.set_defaults(func=_worker, worker_options=[])

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--stack", help="a deployed stack: use its ApiKeysTableName output")
    where.add_argument("--table", help="the keys table (default: $KEYS_TABLE, else `promptsvc dev`'s)")
    create = keys.add_parser("create", parents=[where], help="create a key and print it (once)")
    create.add_argument("--user", required=True, help="the user id the key acts as")
    create.add_argument("--admin", action="store_true", help="an admin key (sees every user's prompts)")
    from promptsvc_dev.client_keys import add_limit_flags

    add_limit_flags(create)
    create.add_argument("--models", help="comma-separated model ids the key may use (default: all)")
    create.add_argument("--expires", help="RFC 3339 time the key stops working (default: never)")
    create.set_defaults(func=_keys_create)
    from promptsvc_dev.client_keys import add_commands as add_key_commands

    add_key_commands(keys, _keys_revoke)  # list, rotate, revoke: through the API

    from promptsvc_dev.client_cli import add_commands

    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.func is _worker:
        args.worker_options = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int(args.func(args))
    except ModuleNotFoundError as missing:
        if args.command not in SERVER_COMMANDS:
            raise
        print(
            f"promptsvc {args.command} needs the server's dependencies ({missing}): "
            'pip install "promptsvc[local]"',
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
