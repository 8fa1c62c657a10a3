"""End to end: `promptsvc dev` as a subprocess, driven over real HTTP on loopback."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import DevServer, call

pytestmark = pytest.mark.e2e


def test_sync_add_returns_the_answer(server: DevServer, users: dict[str, str]) -> None:
    response = call(
        server, users["alice"], "POST", "/prompt-svc/prompt", {"prompt": "What's a banana?", "sync": True}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["prompt"]["status"] == "completed"
    assert body["answer"] == "[INST]What's a banana?[/INST]"
    assert body["responseMessage"]["text"] == body["answer"]


def test_async_add_then_poll(server: DevServer, users: dict[str, str]) -> None:
    added = call(
        server, users["alice"], "POST", "/prompt-svc/prompt", {"prompt": "later", "threadId": "poll"}
    )
    prompt_id = added.json()["prompt"]["id"]

    status, body = "", {}
    for _ in range(200):
        body = call(server, users["alice"], "GET", f"/prompt-svc/prompt/{prompt_id}").json()
        status = body["prompt"]["status"]
        if status == "completed":
            break
        time.sleep(0.1)

    assert added.json()["prompt"]["status"] == "scheduled"
    assert status == "completed"
    assert body["answer"] == "[INST]later[/INST]"


def test_list_with_filters_and_paging(server: DevServer, users: dict[str, str]) -> None:
    ids = [
        call(
            server, users["alice"], "POST", "/prompt-svc/prompt", {"prompt": f"p{i}", "threadId": "paging"}
        ).json()["prompt"]["id"]
        for i in range(5)
    ]
    query = {
        "filters": [{"fields": ["threadId"], "op": "equals", "jsonValues": json.dumps(["paging"])}],
        "limit": 2,
    }

    seen: list[str] = []
    after = None
    for _ in range(10):
        page = call(
            server, users["alice"], "POST", "/prompt-svc/prompts", {"query": {**query, "jsonAfter": after}}
        )
        assert page.status_code == 200, page.text
        seen += [p["id"] for p in page.json()["prompts"]]
        after = page.json().get("after")
        if not after:
            break

    assert seen == list(reversed(ids))


def test_cancel_and_remove(server: DevServer, users: dict[str, str]) -> None:
    prompt_id = call(server, users["alice"], "POST", "/prompt-svc/prompt", {"prompt": "stop me"}).json()[
        "prompt"
    ]["id"]
    canceled = call(server, users["alice"], "POST", f"/prompt-svc/prompt/{prompt_id}/cancel")
    time.sleep(0.5)  # let the consumer see the message; the conditional writes keep the cancel

    after = call(server, users["alice"], "GET", f"/prompt-svc/prompt/{prompt_id}").json()
    removed = call(server, users["alice"], "POST", "/prompt-svc/remove", {"promptId": prompt_id})
    gone = call(server, users["alice"], "GET", f"/prompt-svc/prompt/{prompt_id}")

    assert canceled.status_code == 200
    assert after["prompt"]["status"] == "canceled"
    # Canceled before the consumer ran it: no answer; while it ran: the partial answer is kept.
    assert "[INST]stop me[/INST]".startswith(after["answer"])
    assert removed.status_code == 200
    assert gone.status_code == 404


def test_isolation_between_two_users(server: DevServer, users: dict[str, str]) -> None:
    mine = call(server, users["alice"], "POST", "/prompt-svc/prompt", {"prompt": "private"}).json()["prompt"][
        "id"
    ]

    assert call(server, users["bob"], "GET", f"/prompt-svc/prompt/{mine}").status_code == 404
    assert call(server, users["bob"], "DELETE", f"/prompt-svc/prompt/{mine}").status_code == 404
    listed = call(server, users["bob"], "POST", "/prompt-svc/prompts", {}).json()["prompts"]
    assert mine not in {p["id"] for p in listed}
    assert call(server, "not-a-key", "POST", "/prompt-svc/prompts", {}).status_code == 401


def test_keys_cli_creates_a_key_for_the_running_stack(server: DevServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYS_TABLE"))}
    created = {}
    for user, flags in [("carol", []), ("ops", ["--admin"])]:
        result = subprocess.run(
            [sys.executable, "-m", "promptsvc_dev.cli", "keys", "create", "--user", user, *flags],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        created[user] = result.stdout.strip()

    carol = call(server, created["carol"], "POST", "/prompt-svc/prompt", {"prompt": "mine"})
    everyone = call(server, created["ops"], "POST", "/prompt-svc/prompts", {"query": {"count": True}})

    assert carol.status_code == 200 and carol.json()["prompt"]["userId"] == "carol"
    assert everyone.status_code == 200
    assert carol.json()["prompt"]["id"] in {p["id"] for p in everyone.json()["prompts"]}
    assert everyone.json()["count"] > 1


def test_ctrl_c_stops_everything(server: DevServer, users: dict[str, str]) -> None:
    server.process.send_signal(signal.SIGINT)

    code = server.process.wait(timeout=30)

    assert code == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.base_url + "/prompt-svc/models", timeout=2)
    assert not (ROOT / ".promptsvc" / "dev.json").exists()
