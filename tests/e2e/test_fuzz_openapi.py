"""Fuzzing the published contract on a real `promptsvc dev`.

schemathesis reads the server's /openapi.json and generates requests for every operation, valid
ones and ones that break the schema (which includes leaving the key out), as the admin, as a user
and with an unknown key; ids and names in paths, queries and bodies are often swapped for ones that
exist (prompts, stored prompts and their versions of both users, models, spare keys), so answers
other than 404 and 400 are checked too; removals run last. Every answer must pass: no 5xx, a
documented status, a body that matches the documented schema for that status. Derandomized, so
every run sends the same requests; a failure does not stop the run: every one is listed at the end.
"""

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.core.failures import Failure, FailureGroup

from tests.conftest import ROOT
from tests.e2e.conftest import ADMIN_KEY, DevServer, call, dev_server

pytestmark = pytest.mark.e2e

CASES_PER_OPERATION = 32  # per generation mode, at most: 19 operations give well over 1,000 cases
MIN_CASES = 1000
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@dataclass
class Fixtures:
    """Things that exist on the server, for the fuzzer to aim at: values by path parameter or body
    field name, and the keys to call with (an unknown one too)."""

    values: dict[str, list[Any]]
    keys: list[str]


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[DevServer]:
    # A responses subscription that sees no done waits SUBSCRIBE_WAIT_SECONDS: short here.
    with dev_server(mock_chunk_delay=0, env={"SUBSCRIBE_WAIT_SECONDS": "0.5"}) as started:
        yield started


def _existing(server: DevServer) -> Fixtures:
    user_key = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": "fuzz-user"}).json()["key"]
    models = [m["id"] for m in call(server, ADMIN_KEY, "GET", "/prompt-svc/models").json()["models"]]
    values: dict[str, list[Any]] = {"prompt_id": [], "version_id": [], "key_id": [], "modelId": models}
    for key in (ADMIN_KEY, user_key):
        for n in range(2):
            body = {"id": f"fuzz-{n}", "threadId": "fuzz-thread", "prompt": "hi", "sync": n == 0}
            added = call(server, key, "POST", "/prompt-svc/prompt", body)
            assert added.status_code == 200, added.text
        stored = call(server, key, "POST", "/v2/prompts", {
            "display_name": "fuzz", "path": "Default",
            "prompt": {"model": models[0], "messages": [{"role": "user", "content": "Hi {{name}}"}]},
        })  # fmt: skip
        assert stored.status_code == 200, stored.text
        values["prompt_id"] += ["fuzz-0", "fuzz-1", stored.json()["_id"]]
        values["version_id"].append(stored.json()["prompt"]["version"])
    for _ in range(3):  # keys the fuzzer may revoke (not the ones it calls with)
        spare = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": "fuzz-user"})
        values["key_id"].append(spare.json()["keyId"])
    values["thread_id"] = ["fuzz-thread"]
    values["promptId"] = values["prompt_id"]
    values["promptConfigId"] = values["prompt_id"]
    values["promptConfigVersion"] = values["version_id"]
    values["userId"] = ["fuzz-user", "admin"]
    return Fixtures(values, [ADMIN_KEY, user_key, ADMIN_KEY, user_key, "psk_unknown_key"])


def test_the_dev_server_serves_the_published_document_and_swagger_ui(fuzz_server: DevServer) -> None:
    served = httpx.get(fuzz_server.base_url + "/openapi.json", timeout=10)  # no key needed
    assert served.status_code == 200
    assert served.json() == json.loads((ROOT / "docs" / "openapi.json").read_text())
    page = httpx.get(fuzz_server.base_url + "/docs", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "swagger-ui" in page.text and "/openapi.json" in page.text


def test_fuzzing_every_operation_finds_no_server_error_and_no_answer_outside_the_schema(
    fuzz_server: DevServer,
) -> None:
    schema = schemathesis.openapi.from_url(fuzz_server.base_url + "/openapi.json")
    existing = _existing(fuzz_server)
    cases: Counter[str] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=_removes)  # removals last, so the others still find what exists
    started = time.monotonic()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, fuzz_server.base_url, existing, cases, statuses, failures)
    elapsed = time.monotonic() - started
    print(f"\nfuzz: {sum(cases.values())} cases over {len(operations)} operations in {elapsed:.0f} s")
    for label in sorted(cases):
        seen = ", ".join(f"{s}x{n}" for (op, s), n in sorted(statuses.items()) if op == label)
        print(f"  {label}: {cases[label]} cases ({seen})")
    assert len(operations) == 23  # 19, the keys' list, rotate and update, and usage (issue 13)
    assert all(cases[operation.label] > 0 for operation in operations)
    assert sum(cases.values()) >= MIN_CASES
    assert not failures, f"{len(failures)} failing cases:\n" + "\n\n".join(failures)


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    existing: Fixtures,
    cases: Counter[str],
    statuses: Counter[tuple[str, int]],
    failures: list[str],
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=CASES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any, data: st.DataObject) -> None:
        _aim(case.path_parameters, existing, data)
        _aim(case.query, existing, data)
        if isinstance(case.body, dict):
            _aim(case.body, existing, data)
        key = data.draw(st.sampled_from(existing.keys))
        headers = {"Authorization": f"Bearer {key}"}
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        cases[operation.label] += 1
        statuses[(operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Failure, FailureGroup) as error:
            failures.append(f"{operation.label} [{mode.value}] -> {response.status_code}: {error}\n"
                            f"  {case.as_curl_command(headers={'Authorization': 'Bearer KEY'})}")  # fmt: skip

    run()


def _aim(values: dict[str, Any] | None, existing: Fixtures, data: st.DataObject) -> None:
    """Swap some generated values for existing ones, so answers other than 404 and 400 come too."""
    for name in values or {}:
        if name in existing.values and data.draw(st.booleans()):
            values[name] = data.draw(st.sampled_from(existing.values[name]))


def _removes(operation: Any) -> bool:
    return operation.method.upper() == "DELETE" or operation.path == "/prompt-svc/remove"
