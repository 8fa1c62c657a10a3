"""A stored prompt made with the official SDK (`orq-ai-sdk`) and run through the queue, on
`promptsvc dev` over real sockets: the registry, the intake and the consumer wired as deployed."""

from orq_ai_sdk import Orq

from tests.e2e.conftest import DevServer, call

MODEL = "mistralai/Mistral-7B-Instruct-v0.3"


def test_a_prompt_stored_with_the_sdk_runs_with_its_variables(
    server: DevServer, users: dict[str, str]
) -> None:
    sdk = Orq(api_key=users["alice"], server_url=server.base_url)
    stored = sdk.prompts.create(
        request={
            "display_name": "Explainer",
            "path": "Default/e2e",
            "prompt": {
                "model": MODEL,
                "messages": [
                    {"role": "system", "content": "You answer in {{language}}."},
                    {"role": "user", "content": "Tell me about {{topic}}."},
                ],
                "temperature": 0.2,
                "fallbacks": [{"model": "Qwen/Qwen2.5-7B-Instruct"}],
            },
        }
    )

    response = call(
        server,
        users["alice"],
        "POST",
        "/prompt-svc/prompt",
        {"promptConfigId": stored.id, "variables": {"language": "French", "topic": "cheese"}, "sync": True},
    )
    missing = call(
        server, users["alice"], "POST", "/prompt-svc/prompt", {"promptConfigId": stored.id, "variables": {}}
    )
    foreign = call(
        server,
        users["bob"],
        "POST",
        "/prompt-svc/prompt",
        {"promptConfigId": stored.id, "variables": {"language": "French", "topic": "cheese"}},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prompt"]["status"] == "completed"
    assert body["prompt"]["promptConfigId"] == stored.id
    assert body["prompt"]["promptConfigVersion"] == stored.prompt.version
    assert body["prompt"]["answeredBy"] == MODEL
    assert "Tell me about cheese." in body["answer"]  # the mock engine echoes what it is sent
    assert missing.status_code == 400 and "language" in missing.json()["error"]
    assert foreign.status_code == 404
