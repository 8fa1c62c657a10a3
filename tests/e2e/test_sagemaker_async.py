"""End to end: `promptsvc dev --engine sagemaker-async`, every prompt answered by the local async
endpoint (dev/promptsvc_dev/async_endpoint.py): the consumer puts the request in S3 and invokes
the endpoint over its wire protocol, the endpoint writes the answer to S3 and publishes its
notification to the template's SNS topic, and the settle function completes the prompt."""

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, DevServer, call, dev_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server(0.2, None, "--engine", "sagemaker-async") as started:
        yield started


def test_a_prompt_is_answered_by_the_async_endpoint_and_settled_by_its_notification(
    server: DevServer,
) -> None:
    key = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": "alice"}).json()["key"]
    added = call(server, key, "POST", "/prompt-svc/prompt", {"prompt": "What's a banana?", "threadId": "t"})
    assert added.status_code == 200, added.text
    prompt_id = added.json()["prompt"]["id"]

    seen: list[str] = []
    body: dict[str, object] = {}
    for _ in range(300):
        body = call(server, key, "GET", f"/prompt-svc/prompt/{prompt_id}").json()
        status = str(body["prompt"]["status"])  # type: ignore[index]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == "completed":
            break
        time.sleep(0.1)

    assert seen[-1] == "completed", seen
    assert "running" in seen  # held by no consumer while the endpoint worked on it
    # The echo container answers the request's `inputs`: the prompt rendered with its template.
    assert body["answer"] == "[INST]What's a banana?[/INST]"
    events = httpx.get(
        f"{server.base_url}/prompt-svc/thread/t/events",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert events.status_code == 200, events.text
    kinds = [(e["type"], e.get("status") or e.get("text")) for e in events.json()["events"]]
    assert kinds == [
        ("status", "scheduled"),
        ("status", "running"),
        ("delta", "[INST]What's a banana?[/INST]"),
        ("status", "completed"),
    ]
