"""The client commands of `promptsvc`: prompt, prompts, thread, models, usage, registry.

They use only the SDK (promptsvc.client), so they run with `pip install "promptsvc[client]"`, without
the server's dependencies (tests/e2e/test_cli.py runs them with those blocked).
"""

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from promptsvc.client import ApiError, Client, Prompt, StreamError
from promptsvc.client.ids import new_prompt_id

from promptsvc_dev import client_connection
from promptsvc_dev.client_output import PROMPT_HEADER, as_json, event_line, prompt_rows, table
from promptsvc_dev.spinner import Spinner

INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)
Command = Callable[[Client, argparse.Namespace], int]


def _prompt(client: Client, args: argparse.Namespace) -> int:
    """Add the prompt, then print its answer (streamed unless --no-stream); Ctrl-C cancels it."""
    prompt_id = new_prompt_id()  # known before the add, so Ctrl-C during the add can cancel it
    try:
        if args.no_stream:
            with Spinner("waiting for the answer"):
                prompt = client.add_prompt(args.text, args.model, args.thread, sync=True, prompt_id=prompt_id)
                if not prompt.terminal:  # the API's sync wait ran out (202)
                    prompt = client.wait_prompt(prompt.id)
            if not args.json and prompt.answer:
                print(prompt.answer)
        else:
            prompt = _stream_answer(client, args, prompt_id)
    except KeyboardInterrupt:
        _cancel_on_interrupt(client, prompt_id)
        return INTERRUPTED
    if args.json:
        print(as_json(prompt))
    if prompt.status != "completed":
        print(
            f"promptsvc: prompt {prompt.id} {prompt.status}: {prompt.error or 'no answer'}", file=sys.stderr
        )
        return 1
    return 0


def _stream_answer(client: Client, args: argparse.Namespace, prompt_id: str) -> Prompt:
    before = client.last_seq(args.thread) if args.thread else 0  # a new thread starts at seq 1
    spinner = Spinner("waiting for the first token").start()
    try:
        added = client.add_prompt(args.text, args.model, args.thread, prompt_id=prompt_id)
        printed = ""
        events = client.stream_thread(added.thread_id, after=before, until="terminal", prompt_id=added.id)
        for event in events:
            if event.prompt_id != added.id:
                continue
            if event.type == "delta" and event.text:
                spinner.stop()
                if not args.json:
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                printed += event.text
            elif event.type == "reset" and printed:
                printed = ""
                if not args.json:
                    print("\n[the run failed and is retried: its answer starts again]", file=sys.stderr)
    finally:
        spinner.stop()
    if printed and not args.json and not printed.endswith("\n"):
        print()
    return client.get_prompt(added.id)


def _cancel_on_interrupt(client: Client, prompt_id: str) -> None:
    try:
        canceled = client.cancel_prompt(prompt_id)
        print(f"\npromptsvc: canceled prompt {canceled.id}", file=sys.stderr)
    except ApiError as error:  # 404: never added; 409: finished first
        print(f"\npromptsvc: prompt {prompt_id} not canceled: {error.message}", file=sys.stderr)


def _prompts_list(client: Client, args: argparse.Namespace) -> int:
    prompts = list(client.list_prompts(status=args.status, thread_id=args.thread, limit=args.limit))
    print(as_json(prompts) if args.json else table(PROMPT_HEADER, prompt_rows(prompts)))
    return 0


def _prompts_get(client: Client, args: argparse.Namespace) -> int:
    print(as_json(client.get_prompt(args.id)))
    return 0


def _prompts_cancel(client: Client, args: argparse.Namespace) -> int:
    prompt = client.cancel_prompt(args.id)
    print(f"{prompt.id} {prompt.status}")
    return 0


def _prompts_rm(client: Client, args: argparse.Namespace) -> int:
    client.remove_prompt(args.id)
    print(f"{args.id} removed")
    return 0


def _thread_watch(client: Client, args: argparse.Namespace) -> int:
    try:
        for event in client.stream_thread(args.thread, after=args.after):
            print(event.model_dump_json(by_alias=True) if args.json else event_line(event), flush=True)
    except KeyboardInterrupt:
        return INTERRUPTED
    return 0


def _models(client: Client, args: argparse.Namespace) -> int:
    catalog = client.models()
    if args.json:
        print(as_json(catalog))
        return 0
    rows = [[m.id + (" *" if m.id == catalog.default_model_id else ""), m.engine] for m in catalog.models]
    print(table(["MODEL (* default)", "ENGINE"], rows))
    return 0


def _usage(client: Client, args: argparse.Namespace) -> int:
    report = client.usage(args.first, args.last, args.by, args.user)
    if args.json:
        print(as_json(report))
        return 0
    whose = report.user_id or "every user"
    print(f"usage of {whose}, {report.first} to {report.last} (UTC), by {report.group_by}")
    groups = [(g.day if args.by == "day" else g.model_id) or "" for g in report.usage]
    counts = [*report.usage, report.total]
    rows = [
        [
            name,
            str(c.prompts),
            str(c.prompt_tokens),
            str(c.completion_tokens),
            str(c.failed_attempts),
            str(c.cache_hits),
        ]
        for name, c in zip([*groups, "total"], counts, strict=True)
    ]
    header = [
        "DAY" if args.by == "day" else "MODEL",
        "PROMPTS",
        "TOKENS IN",
        "TOKENS OUT",
        "FAILED",
        "CACHE HITS",
    ]
    print(table(header, rows))
    return 0


def _registry_list(client: Client, args: argparse.Namespace) -> int:
    stored = list(client.registry_list(limit=args.limit))
    if args.json:
        print(as_json(stored))
        return 0
    rows = [[p.id, p.display_name, p.path, str(p.prompt.get("model") or ""), p.updated[:19]] for p in stored]
    print(table(["ID", "NAME", "PATH", "MODEL", "UPDATED"], rows))
    return 0


def _registry_get(client: Client, args: argparse.Namespace) -> int:
    print(as_json(client.registry_get(args.id)))
    return 0


def _registry_create(client: Client, args: argparse.Namespace) -> int:
    print(as_json(client.registry_create(read_entity(args.file))))
    return 0


def _registry_versions(client: Client, args: argparse.Namespace) -> int:
    versions = list(client.registry_versions(args.id, limit=args.limit))
    if args.json:
        print(as_json(versions))
        return 0
    rows = [[v.id, v.timestamp[:19], str(v.prompt.get("model") or ""), v.description or ""] for v in versions]
    print(table(["VERSION", "CREATED", "MODEL", "DESCRIPTION"], rows))
    return 0


def read_entity(name: str) -> dict[str, Any]:
    """A stored prompt's definition from a JSON or YAML file (by its extension; `-`: JSON on stdin)."""
    text = sys.stdin.read() if name == "-" else Path(name).read_text()
    if name.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError as missing:
            raise SystemExit(
                "promptsvc: reading YAML needs PyYAML: pip install pyyaml (or give JSON)"
            ) from missing
        entity = yaml.safe_load(text)
    else:
        entity = json.loads(text)
    if not isinstance(entity, dict):
        raise SystemExit(f"promptsvc: {name} holds no object (display_name, path, prompt, ...)")
    return entity


def run(command: Command, args: argparse.Namespace) -> int:
    """Connect, run the command, and turn the errors people meet into one line and exit code 1."""
    try:
        with Client(**_connection(args)) as client:
            return command(client, args)
    except client_connection.NoConnection as error:
        print(f"promptsvc: {error}", file=sys.stderr)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except ApiError as error:
        print(f"promptsvc: {error.status_code} {error.message}", file=sys.stderr)
    except (StreamError, httpx.HTTPError, OSError, ValueError) as error:
        print(f"promptsvc: {error}", file=sys.stderr)
    return 1


def _connection(args: argparse.Namespace) -> dict[str, Any]:
    config = client_connection.resolve(args)
    return {"url": config.url, "api_key": config.api_key, "ws_url": config.ws_url}


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    connection = argparse.ArgumentParser(add_help=False)
    client_connection.add_arguments(connection)
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON (the API's field names)")

    def command(
        parent: Any, name: str, handler: Command, help: str, json: bool = True
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(
            name, parents=[connection, *([output] if json else [])], help=help, description=help
        )
        parser.set_defaults(func=lambda args: run(handler, args))
        return parser

    prompt = command(commands, "prompt", _prompt, "add a prompt and print its answer as it streams")
    prompt.add_argument("text", help="the prompt")
    prompt.add_argument("--model", help="a model id of `promptsvc models` (default: the catalog's)")
    prompt.add_argument("--thread", help="the thread to add it to (default: a new one)")
    prompt.add_argument("--no-stream", action="store_true", help="wait for the whole answer (sync add)")

    prompts = commands.add_parser("prompts", help="list, read, cancel and remove prompts")
    verbs = prompts.add_subparsers(dest="prompts_command", required=True)
    listing = command(verbs, "list", _prompts_list, "your prompts, newest first (a table, or --json)")
    listing.add_argument("--status", help="only prompts in this status (scheduled, running, completed, ...)")
    listing.add_argument("--thread", help="only this thread's prompts")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20; 0: all)")
    listing.set_defaults(func=lambda args: run(_prompts_list, _all_if_zero(args)))
    for name, handler, text in (
        ("get", _prompts_get, "a prompt, with its answer, as JSON"),
        ("cancel", _prompts_cancel, "cancel a prompt"),
        ("rm", _prompts_rm, "remove a prompt"),
    ):
        command(verbs, name, handler, text, json=False).add_argument("id", help="the prompt id")

    thread = commands.add_parser("thread", help="follow a thread's events")
    watch = command(
        thread.add_subparsers(dest="thread_command", required=True),
        "watch", _thread_watch, "print a thread's events as they happen, one a line (Ctrl-C stops)",
    )  # fmt: skip
    watch.add_argument("thread")
    watch.add_argument(
        "--after", type=int, default=0, help="replay the stored events after this seq (default 0)"
    )

    command(commands, "models", _models, "the model catalog")

    usage = command(commands, "usage", _usage, "tokens and prompts per day or model (a table, or --json)")
    usage.add_argument(
        "--from", dest="first", help="first UTC day, YYYY-MM-DD (default: 29 days before --to)"
    )
    usage.add_argument("--to", dest="last", help="last UTC day (default: today); at most 92 days in all")
    usage.add_argument("--by", choices=("day", "model"), default="day", help="group by (default: day)")
    usage.add_argument("--user", help="admin: this user's usage (default: every user's; a user: their own)")

    registry = commands.add_parser("registry", help="stored, versioned prompts (/v2/prompts)")
    stored = registry.add_subparsers(dest="registry_command", required=True)
    command(stored, "list", _registry_list, "your stored prompts").add_argument(
        "--limit", type=int, default=None, help="at most this many (default: all)"
    )
    command(stored, "get", _registry_get, "a stored prompt as JSON", json=False).add_argument("id")
    command(
        stored, "create", _registry_create, "store a prompt from a JSON or YAML file", json=False
    ).add_argument(
        "file",
        help="display_name, path, prompt {model, messages, ...} (docs/registry.md); `-`: JSON on stdin",
    )
    versions = command(stored, "versions", _registry_versions, "a stored prompt's versions, newest first")
    versions.add_argument("id")
    versions.add_argument("--limit", type=int, default=None)


def _all_if_zero(args: argparse.Namespace) -> argparse.Namespace:
    if args.limit is not None and args.limit <= 0:
        args.limit = None
    return args
