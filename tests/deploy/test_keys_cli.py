"""`promptsvc keys create --stack NAME`, as the README's Deploy section makes the first key of a
deployed stack: the keys table is found through the stack's ApiKeysTableName output."""

import json

import pytest
from promptsvc.adapters.clients import client
from promptsvc.adapters.key_table import DynamoKeyRepository
from promptsvc.domain.keys import Role
from promptsvc.services.keys import KeyService
from promptsvc_dev.cli import main

# A stand-in for the deployed stack: its keys table and the output promptsvc's template gives it.
STACK = {
    "Resources": {
        "ApiKeysTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "keyId", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "keyId", "KeyType": "HASH"}],
            },
        }
    },
    "Outputs": {"ApiKeysTableName": {"Value": {"Ref": "ApiKeysTable"}}},
}


@pytest.fixture
def stack_table(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("KEYS_TABLE", raising=False)
    client("cloudformation").create_stack(StackName="promptsvc-dev", TemplateBody=json.dumps(STACK))
    (table,) = client("dynamodb").list_tables()["TableNames"]
    return str(table)


def test_keys_create_finds_the_table_of_a_deployed_stack(
    stack_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "--user", "admin", "--admin", "--stack", "promptsvc-dev"]) == 0

    key = capsys.readouterr().out.strip()
    principal = KeyService(DynamoKeyRepository(stack_table)).authenticate(f"Bearer {key}")
    assert (principal.user_id, principal.role) == ("admin", Role.ADMIN)


def test_keys_create_and_revoke_with_an_explicit_table(
    stack_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "--user", "bob", "--table", stack_table]) == 0
    key_id = capsys.readouterr().err.split()[2]

    assert main(["keys", "revoke", key_id, "--table", stack_table]) == 0
    assert DynamoKeyRepository(stack_table).get(key_id) is None


def test_a_stack_without_the_output_is_refused(aws: None) -> None:
    client("cloudformation").create_stack(
        StackName="other", TemplateBody=json.dumps({"Resources": STACK["Resources"]})
    )
    with pytest.raises(SystemExit, match="no ApiKeysTableName output"):
        main(["keys", "create", "--user", "bob", "--stack", "other"])


def test_keys_create_gives_the_key_its_limits_models_and_expiry(
    stack_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keys", "create", "--user", "carol", "--table", stack_table, "--rpm", "60", "--in-flight", "0"]
    argv += ["--models", "a/model,b/model", "--expires", "2099-01-01T00:00:00Z"]
    assert main(argv) == 0
    key_id = capsys.readouterr().err.split()[2]

    record = DynamoKeyRepository(stack_table).get(key_id)
    assert record is not None
    assert (record.limits.requests_per_minute, record.limits.prompts_in_flight) == (60, 0)
    assert record.limits.tokens_per_day is None  # not given: the deployment's default
    assert record.allowed_models == ("a/model", "b/model")
    assert record.expires_at.startswith("2099-01-01T00:00:00")


@pytest.mark.parametrize("bad", [["--rpm", "-1"], ["--in-flight", "lots"]])
def test_keys_create_refuses_a_bad_limit(stack_table: str, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["keys", "create", "--user", "carol", "--table", stack_table, *bad])
    assert exited.value.code == 2
    assert client("dynamodb").scan(TableName=stack_table)["Items"] == []
