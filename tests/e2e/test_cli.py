"""End to end: the `promptsvc` client commands against `promptsvc dev`, as subprocesses (piped, and
in a pseudo-terminal as a person runs them). Every wait is bounded; nothing asserts timing."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from promptsvc.client import Client

from tests.conftest import ROOT
from tests.e2e.conftest import DevServer, dev_server
from tests.e2e.terminal import Terminal
from tests.e2e.without_server_deps import run_without_server_deps

pytestmark = pytest.mark.e2e

CHUNKS = 60  # with 0.05 s a chunk, a run streams for about 3 s: time to press Ctrl-C mid-answer
WAIT = 60.0
LONG = "Tell me everything about bananas: their history, their botany, their trade and their taste. " * 2


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server(mock_chunk_delay=0.05, env={"MOCK_CHUNKS": str(CHUNKS)}) as started:
        yield started


@pytest.fixture(scope="module")
def env(server: DevServer, users: dict[str, str]) -> dict[str, str]:
    """A clean environment pointing the CLI at the server as alice, as `promptsvc dev`'s exports do."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROMPTSVC_"))}
    return {
        **clean,
        "PROMPTSVC_URL": server.base_url,
        "PROMPTSVC_API_KEY": users["alice"],
        "PROMPTSVC_WS_URL": server.ws_url,
    }


@pytest.fixture
def alice(server: DevServer, users: dict[str, str]) -> Iterator[Client]:
    with Client(server.base_url, users["alice"], server.ws_url) as client:
        yield client


def promptsvc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptsvc_dev.cli", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=WAIT,
    )  # fmt: skip


def answer_of(text: str) -> str:
    return f"[INST]{text}[/INST]"  # the mock engine echoes the rendered prompt


def first_delta(client: Client, thread_id: str) -> None:
    """Wait (bounded) until the thread shows a delta: the answer is streaming."""
    deadline = time.monotonic() + WAIT
    while not any(e.type == "delta" for e in client.thread_events(thread_id)):
        assert time.monotonic() < deadline, f"no delta on {thread_id}"
        time.sleep(0.05)


def test_prompt_streams_the_answer_to_a_terminal(env: dict[str, str], alice: Client) -> None:
    text = "Tell me about bananas, in a terminal."
    terminal = Terminal(
        [sys.executable, "-m", "promptsvc_dev.cli", "prompt", text, "--thread", "cli-tty"], env, str(ROOT)
    )
    assert terminal.wait(WAIT) == 0
    seen = terminal.output.decode()
    assert answer_of(text) in seen  # printed as it arrived, whole
    assert "waiting for the first token" in seen  # the progress indicator, on a terminal only
    (listed,) = alice.list_prompts(thread_id="cli-tty")
    prompt = alice.get_prompt(listed.id)
    assert (prompt.status, prompt.answer) == ("completed", answer_of(text))


def test_ctrl_c_cancels_the_prompt(env: dict[str, str], alice: Client) -> None:
    argv = [sys.executable, "-m", "promptsvc_dev.cli", "prompt", LONG, "--thread", "cli-ctrl-c"]
    terminal = Terminal(argv, env, str(ROOT))
    first_delta(alice, "cli-ctrl-c")
    terminal.read_until(lambda out: b"[INST]" in out, WAIT)  # the first tokens reached the screen
    terminal.press_ctrl_c()
    assert terminal.wait(WAIT) == 130
    assert b"canceled prompt" in terminal.output
    (listed,) = alice.list_prompts(thread_id="cli-ctrl-c")
    prompt = alice.get_prompt(listed.id)
    assert prompt.status == "canceled" and prompt.answer is not None
    assert answer_of(LONG).startswith(prompt.answer)  # what ran until the cancel took effect


def test_piped_the_answer_is_plain_and_a_canceled_prompt_fails(env: dict[str, str], alice: Client) -> None:
    done = promptsvc(env, "prompt", "Plain, please", "--thread", "cli-piped")
    assert (done.returncode, done.stdout) == (0, answer_of("Plain, please") + "\n")
    assert done.stderr == ""  # no spinner when not on a terminal
    run = subprocess.Popen(
        [sys.executable, "-m", "promptsvc_dev.cli", "prompt", LONG, "--thread", "cli-other"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first_delta(alice, "cli-other")
        (prompt,) = alice.list_prompts(thread_id="cli-other")
        alice.cancel_prompt(prompt.id)
        _, err = run.communicate(timeout=WAIT)
    finally:
        run.kill()
    assert run.returncode == 1
    assert f"prompt {prompt.id} canceled" in err


def test_no_stream_and_json(env: dict[str, str]) -> None:
    run = promptsvc(env, "prompt", "Whole answer", "--no-stream", "--json")
    assert run.returncode == 0, run.stderr
    prompt = json.loads(run.stdout)
    assert (prompt["status"], prompt["answer"], prompt["userId"]) == (
        "completed",
        answer_of("Whole answer"),
        "alice",
    )


def test_prompts_list_get_cancel_rm(env: dict[str, str], alice: Client) -> None:
    ids = [alice.add_prompt(f"listed {n}", thread_id="cli-list").id for n in range(3)]
    table = promptsvc(env, "prompts", "list", "--thread", "cli-list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "THREAD", "MODEL", "CREATED", "PROMPT"]
    assert [line.split()[0] for line in lines[1:]] == ids[::-1]  # newest first
    limited = json.loads(
        promptsvc(env, "prompts", "list", "--thread", "cli-list", "--limit", "2", "--json").stdout
    )
    assert [p["id"] for p in limited] == ids[:0:-1]
    victim = alice.add_prompt(LONG, thread_id="cli-cancel").id  # runs for seconds: time to cancel it
    canceled = promptsvc(env, "prompts", "cancel", victim)
    assert (canceled.returncode, canceled.stdout) == (0, f"{victim} canceled\n")
    alice.add_prompt("not canceled", thread_id="cli-cancel")
    by_status = promptsvc(env, "prompts", "list", "--thread", "cli-cancel", "--status", "canceled", "--json")
    assert [p["id"] for p in json.loads(by_status.stdout)] == [victim]
    got = promptsvc(env, "prompts", "get", victim)
    assert json.loads(got.stdout)["status"] == "canceled"
    assert promptsvc(env, "prompts", "rm", ids[0]).returncode == 0
    missing = promptsvc(env, "prompts", "get", ids[0])
    assert missing.returncode == 1 and missing.stderr.startswith("promptsvc: 404 ")


def test_thread_watch_prints_the_events(env: dict[str, str], alice: Client) -> None:
    alice.add_prompt("Watch me", thread_id="cli-watch", sync=True)
    watch = subprocess.Popen(
        [sys.executable, "-m", "promptsvc_dev.cli", "thread", "watch", "cli-watch", "--after", "1"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    try:
        assert watch.stdout is not None
        for line in watch.stdout:
            lines.append(line.split())
            if "completed" in line:
                break
        watch.send_signal(signal.SIGINT)
        assert watch.wait(WAIT) == 130
    finally:
        watch.kill()
    assert [line[0] for line in lines] == [str(seq) for seq in range(2, len(lines) + 2)]  # after 1, in order
    assert lines[0][1::2] == ["status", "running"] and lines[-1][1::2] == ["status", "completed"]


def test_models(env: dict[str, str], alice: Client) -> None:
    run = promptsvc(env, "models")
    assert run.returncode == 0, run.stderr
    default = alice.models().default_model_id
    assert f"{default} *" in run.stdout


def test_registry_create_from_yaml_and_json_list_get_versions(env: dict[str, str], tmp_path: Path) -> None:
    yaml_file = tmp_path / "weather.yaml"
    yaml_file.write_text(
        "display_name: Weather\npath: Default/cli\nprompt:\n  model: openai/gpt-4o\n"
        "  messages:\n    - role: user\n      content: Weather in {{city}}?\n"
    )
    json_file = tmp_path / "greeting.json"
    json_file.write_text(json.dumps({"display_name": "Greeting", "path": "Default/cli"}))
    created = [
        json.loads(promptsvc(env, "registry", "create", str(f)).stdout) for f in (yaml_file, json_file)
    ]
    assert [c["display_name"] for c in created] == ["Weather", "Greeting"]
    assert created[0]["prompt"]["messages"][0]["content"] == "Weather in {{city}}?"
    listed = promptsvc(env, "registry", "list")
    assert listed.returncode == 0 and {c["_id"] for c in created} <= {
        line.split()[0] for line in listed.stdout.splitlines()
    }
    got = json.loads(promptsvc(env, "registry", "get", created[0]["_id"]).stdout)
    assert got["_id"] == created[0]["_id"]
    versions = json.loads(promptsvc(env, "registry", "versions", created[0]["_id"], "--json").stdout)
    assert [v["_id"] for v in versions] == [created[0]["prompt"]["version"]]


def test_connection_errors_are_one_line(env: dict[str, str]) -> None:
    no_key = promptsvc({k: v for k, v in env.items() if k != "PROMPTSVC_API_KEY"}, "models")
    assert no_key.returncode == 1 and no_key.stderr.startswith("promptsvc: no API key")
    wrong_key = promptsvc({**env, "PROMPTSVC_API_KEY": "psk_wrong"}, "models")
    assert wrong_key.returncode == 1 and wrong_key.stderr.startswith("promptsvc: 401 ")


def test_prompt_runs_without_the_servers_dependencies(env: dict[str, str]) -> None:
    run = run_without_server_deps(
        """
        import sys
        from promptsvc_dev.cli import main
        sys.argv = ["promptsvc", "prompt", "No boto3 in the CLI"]
        code = main(sys.argv[1:])
        print("\\nexit", code)
        """,
        {k: v for k, v in env.items() if k.startswith("PROMPTSVC_")},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [answer_of("No boto3 in the CLI"), "", "exit 0"]
