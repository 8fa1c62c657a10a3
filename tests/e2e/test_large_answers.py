"""A large answer end to end: `promptsvc dev` over real HTTP, its consumer, moto's DynamoDB and S3."""

from promptsvc.domain.prompt import MAX_PROMPT_BYTES

from tests.e2e.conftest import ADMIN_KEY, call, dev_server

# 250 KB of UTF-8: with its echo, more than a DynamoDB item holds
PROMPT = ("Echo me back, whole: ünïcödé € " * 10_000).encode()[: 250 * 1024].decode(errors="ignore")


def test_a_250_kb_prompt_echoed_is_answered_whole_by_a_sync_add_and_a_get() -> None:
    with dev_server(mock_chunk_delay=0, env={"MOCK_MAX_ANSWER_CHARS": str(2 * MAX_PROMPT_BYTES)}) as server:
        added = call(server, ADMIN_KEY, "POST", "/prompt-svc/prompt", {"prompt": PROMPT, "sync": True})

        assert added.status_code == 200, added.text[:500]
        body = added.json()
        expected = f"[INST]{PROMPT}[/INST]"
        assert body["prompt"]["status"] == "completed"
        assert body["answer"] == expected
        got = call(server, ADMIN_KEY, "GET", f"/prompt-svc/prompt/{body['prompt']['id']}")
        assert got.status_code == 200, got.text[:500]
        assert got.json()["answer"] == expected
        assert got.json()["responseMessage"]["text"] == expected
