"""End to end, over real sockets against `promptsvc dev`: keys with an expiry and an allow-list,
listed by an admin and by their user, rotated (both secrets work within the grace), and managed
with the CLI (`promptsvc keys list --json | update | rotate | revoke`)."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from promptsvc.client import ApiError, Client, KeyLimits

from tests.conftest import ROOT
from tests.e2e.conftest import ADMIN_KEY, DevServer, dev_server

pytestmark = pytest.mark.e2e

MISTRAL = "mistralai/Mistral-7B-Instruct-v0.3"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
EXPIRES = "2099-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server(mock_chunk_delay=0) as started:
        yield started


@pytest.fixture
def admin(server: DevServer) -> Iterator[Client]:
    with Client(server.base_url, ADMIN_KEY, server.ws_url) as client:
        yield client


def test_a_key_with_an_expiry_and_an_allow_list_is_listed_and_refused_other_models(
    server: DevServer, admin: Client
) -> None:
    made = admin.create_key("carol", expires_at=EXPIRES, allowed_models=[MISTRAL])
    assert made.key.startswith(made.prefix) and made.expires_at == "2099-01-01T00:00:00.000000Z"

    with Client(server.base_url, made.key, server.ws_url) as carol:
        answered = carol.add_prompt("What is a banana?", MISTRAL, sync=True)
        assert answered.status == "completed"
        with pytest.raises(ApiError) as refused:
            carol.add_prompt("What is a banana?", QWEN, sync=True)
        assert refused.value.status_code == 403 and QWEN in refused.value.message
        assert [p.model_id for p in carol.list_prompts()] == [MISTRAL]  # the refused one was not stored

        (own,) = list(carol.list_keys())
        assert (own.key_id, own.user_id, own.state) == (made.key_id, "carol", "active")
        assert own.allowed_models == [MISTRAL] and own.expires_at == made.expires_at
        assert own.last_used_at  # the first use of a key in a function instance is recorded
        with pytest.raises(ApiError) as others:
            list(carol.list_keys(user_id="admin"))
        assert others.value.status_code == 403

    every = list(admin.list_keys())
    assert made.key_id in {k.key_id for k in every} and {"admin", "carol"} <= {k.user_id for k in every}
    assert [k.key_id for k in admin.list_keys(user_id="carol")] == [made.key_id]
    assert made.key not in json.dumps([k.model_dump() for k in every])


def test_a_rotated_key_works_with_both_secrets_within_the_grace(server: DevServer, admin: Client) -> None:
    made = admin.create_key("dave")
    with Client(server.base_url, made.key, server.ws_url) as old:
        rotated = old.rotate_key(made.key_id, grace_seconds=3600)  # a user rotates their own key
        assert rotated.key_id == made.key_id and rotated.key != made.key and rotated.grace_ends_at
        with Client(server.base_url, rotated.key, server.ws_url) as new:
            for client in (old, new):
                assert client.add_prompt("hi", sync=True).status == "completed"
            assert [k.state for k in new.list_keys()] == ["rotating"]
            admin.rotate_key(made.key_id, grace_seconds=0)  # ends both earlier secrets at once
            for client in (old, new):
                with pytest.raises(ApiError) as refused:
                    client.models()
                assert refused.value.status_code == 401


def _promptsvc(server: DevServer, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROMPTSVC_"))}
    env = {**clean, "PROMPTSVC_URL": server.base_url, "PROMPTSVC_API_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "promptsvc_dev.cli", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_cli_lists_rotates_and_revokes_keys_through_the_api(server: DevServer, admin: Client) -> None:
    made = admin.create_key("erin", allowed_models=[MISTRAL])

    listed = _promptsvc(server, ADMIN_KEY, "keys", "list", "--json", "--user", "erin")
    assert listed.returncode == 0, listed.stderr
    (shown,) = json.loads(listed.stdout)
    assert shown["keyId"] == made.key_id and shown["allowedModels"] == [MISTRAL]
    assert "secretHash" not in shown and made.key not in listed.stdout

    table = _promptsvc(server, made.key, "keys", "list")
    assert table.returncode == 0 and made.key_id in table.stdout and "KEY ID" in table.stdout

    rotated = _promptsvc(server, made.key, "keys", "rotate", made.key_id, "--grace", "0")
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.strip()
    assert new_key.startswith(f"psk_{made.key_id}_") and "shown once" in rotated.stderr

    refused = _promptsvc(server, made.key, "keys", "list")
    assert refused.returncode == 1 and "401" in refused.stderr

    changed = _promptsvc(
        server,
        ADMIN_KEY,
        "keys",
        "update",
        made.key_id,
        "--rpm",
        "30",
        "--models",
        "all",
        "--expires",
        EXPIRES,
    )
    assert changed.returncode == 0, changed.stderr
    assert "models all" in changed.stdout and "requests_per_minute=30" in changed.stdout
    (after,) = admin.list_keys("erin")
    assert (
        after.allowed_models is None and after.limits is not None and after.limits.requests_per_minute == 30
    )
    assert after.expires_at is not None and after.expires_at.startswith("2099-01-01")
    back = admin.update_key(made.key_id, limits=KeyLimits(requests_per_minute=None), expires_at=None)
    assert back.limits is not None and back.limits.requests_per_minute is None and back.expires_at is None
    own = _promptsvc(server, new_key, "keys", "update", made.key_id, "--in-flight", "0")
    assert own.returncode == 1 and "only an admin" in own.stderr

    revoked = _promptsvc(server, new_key, "keys", "revoke", made.key_id)
    assert revoked.returncode == 0, revoked.stderr
    gone = _promptsvc(server, new_key, "keys", "list")
    assert gone.returncode == 1 and "401" in gone.stderr
