"""Where the client commands connect: each of the URL, the key and the WebSocket URL from its flag
(--url, --key, --ws-url), else the outputs of a deployed --stack (HttpApiUrl, WebSocketUrl), else
the environment (PROMPTSVC_URL, PROMPTSVC_API_KEY, PROMPTSVC_WS_URL), else a running `promptsvc dev`
of this checkout (its state file; the key it prints is in no file: export it)."""

import argparse
import os
from typing import Any

from promptsvc.client.config import KEY_VARIABLE, URL_VARIABLE, WS_URL_VARIABLE, ClientConfig


class NoConnection(Exception):
    """Nothing says where the service is, or with which key."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--url", help=f"the HTTP API (default: --stack's, ${URL_VARIABLE}, `promptsvc dev`'s)")
    group.add_argument("--key", help=f"the API key (default: ${KEY_VARIABLE})")
    group.add_argument("--ws-url", help=f"the WebSocket API (default: --stack's, ${WS_URL_VARIABLE}, dev's)")
    group.add_argument("--stack", help="a deployed stack: its HttpApiUrl and WebSocketUrl outputs")


def resolve(args: argparse.Namespace) -> ClientConfig:
    stack = stack_outputs(args.stack) if args.stack else {}
    dev = _dev_state() if not (args.url or stack or os.environ.get(URL_VARIABLE)) else {}
    url = args.url or stack.get("HttpApiUrl") or os.environ.get(URL_VARIABLE) or dev.get("api")
    ws_url = (
        args.ws_url or stack.get("WebSocketUrl") or os.environ.get(WS_URL_VARIABLE) or dev.get("websocket")
    )
    key = args.key or os.environ.get(KEY_VARIABLE)
    if not url:
        raise NoConnection(
            f"where is the service? Pass --url (or --stack NAME), set {URL_VARIABLE}, or start "
            "`promptsvc dev` in this checkout"
        )
    if not key:
        raise NoConnection(
            f"no API key: pass --key or set {KEY_VARIABLE} (`promptsvc dev` prints an export line for it)"
        )
    return ClientConfig.resolve(url, key, ws_url)


def stack_outputs(name: str) -> dict[str, str]:
    """A deployed stack's outputs (needs boto3 and AWS credentials; imported only here)."""
    try:
        import boto3
    except ImportError as missing:
        raise NoConnection("--stack reads the stack with boto3: pip install boto3") from missing
    described = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    if "HttpApiUrl" not in outputs:
        raise NoConnection(f"stack {name!r} has no HttpApiUrl output (is it promptsvc's?)")
    return outputs


def _dev_state() -> dict[str, Any]:
    """A running `promptsvc dev` of this checkout (only with the `local` extra installed)."""
    try:
        from promptsvc_dev.dev import read_state
    except ImportError:
        return {}
    try:
        return read_state() or {}
    except FileNotFoundError:  # not in a checkout
        return {}
