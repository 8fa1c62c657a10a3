"""The published contract: /openapi.json is a valid OpenAPI 3.1 document of every route, the
checked-in docs/openapi.json is the app's, and real answers match the documented schemas."""

from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from promptsvc.api import openapi
from promptsvc.api.app import create_app
from promptsvc.settings import Settings

from tests.conftest import ROOT, auth

CHECKED_IN = ROOT / "docs" / "openapi.json"

# Every route of the README's two tables: (method, path) -> (success statuses, error statuses at
# least: a parameter with a syntax also documents the API's validation error).
STREAMS = {("get", "/prompt-svc/prompts/{thread_id}/responses/subscribe")}  # 200: text/event-stream
ROUTES = {
    ("post", "/prompt-svc/prompt"): ({"200", "202"}, {"400", "401", "404", "409", "413", "500"}),
    ("get", "/prompt-svc/prompt/{prompt_id}"): ({"200"}, {"401", "404", "500"}),
    ("post", "/prompt-svc/prompt/{prompt_id}/cancel"): ({"200"}, {"401", "404", "409", "500"}),
    ("delete", "/prompt-svc/prompt/{prompt_id}"): ({"200"}, {"401", "404", "500"}),
    ("post", "/prompt-svc/remove"): ({"200"}, {"400", "401", "404", "413", "500"}),
    ("post", "/prompt-svc/prompts"): ({"200"}, {"400", "401", "413", "500"}),
    ("get", "/prompt-svc/thread/{thread_id}/events"): ({"200"}, {"400", "401", "500"}),
    ("get", "/prompt-svc/models"): ({"200"}, {"401", "500"}),
    ("post", "/prompt-svc/types"): ({"200"}, {"400", "401", "413", "500"}),
    ("get", "/prompt-svc/usage"): ({"200"}, {"400", "401", "403", "404", "500"}),
    ("get", "/prompt-svc/prompts/{thread_id}/responses/subscribe"): ({"200"}, {"400", "401", "500"}),
    ("post", "/prompt-svc/keys"): ({"201"}, {"400", "401", "403", "413", "500"}),
    ("delete", "/prompt-svc/keys/{key_id}"): ({"200"}, {"400", "401", "404", "500"}),
    ("patch", "/prompt-svc/keys/{key_id}"): ({"200"}, {"400", "401", "403", "404", "413", "500"}),
    ("get", "/prompt-svc/keys"): ({"200"}, {"400", "401", "403", "500"}),
    ("post", "/prompt-svc/keys/{key_id}/rotate"): ({"200"}, {"400", "401", "404", "409", "413", "500"}),
    ("post", "/v2/prompts"): ({"200"}, {"400", "401", "409", "413", "422", "500"}),
    ("get", "/v2/prompts"): ({"200"}, {"400", "401", "422", "500"}),
    ("get", "/v2/prompts/{prompt_id}"): ({"200"}, {"401", "404", "500"}),
    ("patch", "/v2/prompts/{prompt_id}"): ({"200"}, {"400", "401", "404", "409", "413", "422", "500"}),
    ("delete", "/v2/prompts/{prompt_id}"): ({"200"}, {"401", "404", "500"}),
    ("get", "/v2/prompts/{prompt_id}/versions"): ({"200"}, {"400", "401", "404", "422", "500"}),
    ("get", "/v2/prompts/{prompt_id}/versions/{version_id}"): ({"200"}, {"401", "404", "500"}),
}
BODIES = {
    ("post", "/prompt-svc/prompt"): "AddPromptRequest",
    ("post", "/prompt-svc/remove"): "RemovePromptRequest",
    ("post", "/prompt-svc/prompts"): "ListPromptsRequest",
    ("post", "/prompt-svc/keys"): "CreateKeyRequest",
    ("post", "/prompt-svc/keys/{key_id}/rotate"): "RotateKeyRequest",
    ("patch", "/prompt-svc/keys/{key_id}"): "UpdateKeyRequest",
    ("post", "/prompt-svc/types"): "PromptTypesRequest",
    ("post", "/v2/prompts"): "NewRegistryPrompt",
    ("patch", "/v2/prompts/{prompt_id}"): "RegistryPromptPatch",
}


@pytest.fixture
def docs_client() -> TestClient:
    """The app as `promptsvc dev` serves it; serving the documentation touches no AWS resource."""
    return TestClient(create_app(Settings(), docs=True), raise_server_exceptions=False)


@pytest.fixture
def served(docs_client: TestClient) -> dict[str, Any]:
    response = docs_client.get("/openapi.json")  # no key: the documentation is public
    assert response.status_code == 200
    return response.json()


def test_the_checked_in_document_is_the_apps() -> None:
    """Fails when a route or model changed without `scripts/openapi` being run."""
    generated = openapi.render(openapi.document(create_app(Settings())))
    assert CHECKED_IN.read_text() == generated, "docs/openapi.json is out of date: run scripts/openapi"


def test_openapi_json_is_a_valid_openapi_3_1_document_of_every_route(served: dict[str, Any]) -> None:
    validate(served)
    assert served["openapi"].startswith("3.1.")
    operations = {(m, p): op for p, item in served["paths"].items() for m, op in item.items()}
    assert set(operations) == set(ROUTES)
    for route, (ok, errors) in ROUTES.items():
        responses = operations[route]["responses"]
        assert {status for status in responses if status < "400"} == ok, route
        assert errors <= set(responses), route
        shape = "RegistryError" if route[1].startswith("/v2/") else "QueueError"
        for status in set(responses) - ok:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{shape}"}, (route, status)
        for status in ok:
            if route in STREAMS:
                event = responses[status]["content"]["text/event-stream"]["schema"]  # each event's
                assert event["properties"]["data"]["contentSchema"] == {
                    "$ref": "#/components/schemas/StreamChunk"
                }
            elif route != ("delete", "/v2/prompts/{prompt_id}"):  # 200 with an empty body
                assert "$ref" in responses[status]["content"]["application/json"]["schema"], route
        assert operations[route]["security"] == [{"apiKey": []}], route
        body = operations[route].get("requestBody")
        if route in BODIES:
            assert body["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{BODIES[route]}"
            }
        else:
            assert body is None, route
    assert served["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "psk_<keyId>_<secret>",
        "description": "An API key: `Authorization: Bearer KEY` (a bare `KEY` is accepted too).",
    }
    assert served["components"]["schemas"]["QueueError"]["required"] == ["error"]
    assert served["components"]["schemas"]["RegistryError"]["required"] == ["message"]


def test_the_prompt_schema_has_every_public_field(served: dict[str, Any]) -> None:
    from promptsvc.domain.prompt import PUBLIC_FIELDS

    view = served["components"]["schemas"]["PromptView"]
    assert set(view["properties"]) == set(PUBLIC_FIELDS)
    assert set(view["required"]) == set(PUBLIC_FIELDS)


def test_swagger_ui_is_served_and_the_deployed_app_serves_no_documentation(docs_client: TestClient) -> None:
    page = docs_client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text and "swagger-ui" in page.text
    deployed = TestClient(create_app(Settings()))
    for path in ("/openapi.json", "/docs"):
        response = deployed.get(path)  # the no-such-route answer (401 without a key)
        assert response.status_code in (401, 404) and "error" in response.json()


class Contract:
    """Checks answers against the served document, with the response schema of their status."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def check(self, method: str, path: str, response: Any) -> Any:
        answer = self.document["paths"][path][method]["responses"][str(response.status_code)]
        content = answer.get("content")
        if content is None:
            assert response.content == b""
            return None
        schema = {**content["application/json"]["schema"], "components": self.document["components"]}
        body = response.json()
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
        return body


def test_real_answers_match_the_documented_schemas(
    client: TestClient, served: dict[str, Any], keys: dict[str, str], consumer: Any
) -> None:
    """Success and error answers of every route, as a client sees them, valid against the document."""
    contract = Contract(served)
    alice, admin = auth(keys["alice"]), auth(keys["admin"])
    http = client

    def send(method: str, path: str, template: str, headers: dict[str, str], **kwargs: Any) -> Any:
        response = http.request(method.upper(), path, headers=headers, **kwargs)
        return response, contract.check(method, template, response)

    added, body = send("post", "/prompt-svc/prompt", "/prompt-svc/prompt", alice,
                       json={"prompt": "hi", "id": "p1", "threadId": "t1"})  # fmt: skip
    assert added.status_code == 200 and body["prompt"]["status"] == "scheduled"
    consumer.drain()
    _, body = send("get", "/prompt-svc/prompt/p1", "/prompt-svc/prompt/{prompt_id}", alice)
    assert body["prompt"]["status"] == "completed" and body["responseMessage"]["text"] == body["answer"]
    assert (
        send("post", "/prompt-svc/prompt/p1/cancel", "/prompt-svc/prompt/{prompt_id}/cancel", alice)[
            0
        ].status_code
        == 409
    )
    send("post", "/prompt-svc/prompt", "/prompt-svc/prompt", alice, json={"prompt": "x", "id": "p2"})
    canceled, body = send(
        "post", "/prompt-svc/prompt/p2/cancel", "/prompt-svc/prompt/{prompt_id}/cancel", alice
    )
    assert canceled.status_code == 200 and body["prompt"]["status"] == "canceled"
    listed, body = send("post", "/prompt-svc/prompts", "/prompt-svc/prompts", alice,
                        json={"query": {"limit": 1, "count": True}})  # fmt: skip
    assert listed.status_code == 200 and body["count"] == 2 and body["after"]
    events, body = send("get", "/prompt-svc/thread/t1/events", "/prompt-svc/thread/{thread_id}/events", alice)
    assert events.status_code == 200 and body["events"]
    assert send("get", "/prompt-svc/models", "/prompt-svc/models", alice)[0].status_code == 200
    created, body = send("post", "/prompt-svc/keys", "/prompt-svc/keys", admin, json={"userId": "carol"})
    assert created.status_code == 201
    assert (
        send("post", "/prompt-svc/keys", "/prompt-svc/keys", alice, json={"userId": "x"})[0].status_code
        == 403
    )
    revoked, _ = send("delete", f"/prompt-svc/keys/{body['keyId']}", "/prompt-svc/keys/{key_id}", admin)
    assert revoked.status_code == 200
    assert (
        send("delete", "/prompt-svc/prompt/p2", "/prompt-svc/prompt/{prompt_id}", alice)[0].status_code == 200
    )
    removed, _ = send("post", "/prompt-svc/remove", "/prompt-svc/remove", alice, json={"promptId": "p2"})
    assert removed.status_code == 404
    send(
        "post",
        "/prompt-svc/prompt",
        "/prompt-svc/prompt",
        alice,
        json={"prompt": "y", "id": "p3", "threadId": "t1"},
    )
    send("delete", "/prompt-svc/prompt/p3", "/prompt-svc/prompt/{prompt_id}", alice)
    _, body = send("get", "/prompt-svc/thread/t1/events", "/prompt-svc/thread/{thread_id}/events", alice)
    assert body["events"][-1]["status"] == "removed"
    assert send("post", "/prompt-svc/prompt", "/prompt-svc/prompt", alice, json={})[0].status_code == 400
    assert send("get", "/prompt-svc/models", "/prompt-svc/models", {})[0].status_code == 401

    stored = {
        "display_name": "Weather",
        "path": "Default",
        "description": "d",
        "metadata": {"language": "English", "team": "x"},
        "prompt": {
            "model": "openai/gpt-4o",
            "temperature": 0.7,
            "stop": ["\n"],
            "response_format": {"type": "json_schema", "json_schema": {"name": "w"}},
            "retry": {"count": 1},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather in {{city}}?"}]},
                {"role": "assistant", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
        },
    }  # fmt: skip
    created, entity = send("post", "/v2/prompts", "/v2/prompts", alice, json=stored)
    assert created.status_code == 200
    item = f"/v2/prompts/{entity['_id']}"
    patched, entity = send("patch", item, "/v2/prompts/{prompt_id}", alice, json={"prompt": {"top_p": 0.5}})
    assert patched.status_code == 200
    _, body = send("get", "/v2/prompts", "/v2/prompts", alice, params={"limit": 1})
    assert body["object"] == "list" and len(body["data"]) == 1
    _, body = send("get", f"{item}/versions", "/v2/prompts/{prompt_id}/versions", alice)
    assert len(body["data"]) == 2
    version = body["data"][0]["_id"]
    one, _ = send("get", f"{item}/versions/{version}", "/v2/prompts/{prompt_id}/versions/{version_id}", alice)
    assert one.status_code == 200
    assert send("get", "/v2/prompts", "/v2/prompts", alice, params={"limit": 0})[0].status_code == 422
    assert send("post", "/v2/prompts", "/v2/prompts", alice, content=b"{")[0].status_code == 400
    assert send("get", item, "/v2/prompts/{prompt_id}", auth(keys["bob"]))[0].status_code == 404
    deleted, _ = send("delete", item, "/v2/prompts/{prompt_id}", alice)
    assert deleted.status_code == 200
