"""infra/sagemaker/deploy.py with the real SageMaker Python SDK v2 (the promptsvc[sagemaker] extra)
against moto: the image it resolves from the SDK's tables, the model, endpoint config and endpoint it
creates, the catalog entry it prints (which the service's catalog takes from its SSM parameter),
and a dry run that calls no AWS API."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import botocore.client
import pytest
from promptsvc.adapters.catalog_source import CatalogSource

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "sagemaker" / "deploy.py"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
MODEL_ID = "org/Tiny-LLM-7B"
ENDPOINT = "promptsvc-tiny-llm-7b"
ECR_IMAGE = re.compile(
    r"^(\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<repo>[^:]+):(?P<tag>.+)$"
)
# moto checks instance types against a list without ml.g5 (deploy.py's default); this GPU type it has.
INSTANCE_TYPE = "ml.g4dn.xlarge"
# The SDK's defaults config for these tests: no telemetry request (it would leave the machine), and
# no developer's ~/.config/sagemaker/config.yaml or /etc/xdg/sagemaker/config.yaml applied.
SDK_CONFIG = "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sagemaker_deploy_script", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deploy = load_script()


@pytest.fixture(scope="module")
def sdk_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("sagemaker") / "config.yaml"
    path.write_text(SDK_CONFIG)
    return {
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(path),
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(path),
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",  # deploy.py uses v2 on purpose
    }


@pytest.fixture(scope="module")
def sdk(sdk_config: dict[str, str]) -> Iterator[Any]:
    """The real SDK, imported as deploy.py does; its endpoint wait polls without sleeping."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in sdk_config.items():
            patch.setenv(name, value)
        module = deploy.import_sdk()
        # moto's endpoints are InService at once, but the SDK sleeps its poll interval (30 s) before
        # each DescribeEndpoint: poll at once, through the SDK's own wait and status check.
        wait_for_endpoint = module.Session.wait_for_endpoint

        def wait_without_sleeping(self: Any, endpoint: str, poll: float = 0, **kwargs: Any) -> Any:
            return wait_for_endpoint(self, endpoint, poll=0, **kwargs)

        patch.setattr(module.Session, "wait_for_endpoint", wait_without_sleeping)
        yield module


def aws_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The AWS operations any boto3 client calls from now on (each still goes to moto)."""
    calls: list[str] = []
    make_api_call = botocore.client.BaseClient._make_api_call

    def recording(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        calls.append(operation_name)
        return make_api_call(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    return calls


def deploy_argv(backend: str = "tgi") -> list[str]:
    return [
        "--model-id", MODEL_ID, "--backend", backend, "--region", REGION, "--role", ROLE,
        "--instance-type", INSTANCE_TYPE, "--instance-count", "2", "--num-gpus", "2",
    ]  # fmt: skip


def sagemaker_resources() -> dict[str, list[Any]]:
    client = boto3.client("sagemaker", region_name=REGION)
    return {
        "models": client.list_models()["Models"],
        "endpointConfigs": client.list_endpoint_configs()["EndpointConfigs"],
        "endpoints": client.list_endpoints()["Endpoints"],
    }


# --- the image ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "repository", "tag"),
    [("tgi", "huggingface-pytorch-tgi-inference", "-tgi"), ("lmi", "djl-inference", "-lmi")],
)
@pytest.mark.parametrize("region", [REGION, "eu-west-1"])
def test_image_uri_is_the_regions_container_from_the_sdks_tables(
    aws: None, sdk: Any, monkeypatch: pytest.MonkeyPatch, backend: str, repository: str, tag: str, region: str
) -> None:
    calls = aws_calls(monkeypatch)
    args = deploy.parse_args(["--model-id", MODEL_ID, "--backend", backend, "--region", region])
    image = deploy.image_uri(args, sdk)
    match = ECR_IMAGE.match(image)
    assert match, image
    assert (match["region"], match["repo"]) == (region, repository)
    assert tag in match["tag"], image
    assert calls == []


# --- the deploy -----------------------------------------------------------------------------------

ENVIRONMENTS = {
    "tgi": {
        "HF_MODEL_ID": MODEL_ID,
        "SM_NUM_GPUS": "2",
        "MAX_INPUT_TOKENS": "4096",
        "MAX_TOTAL_TOKENS": "8192",
        "MESSAGES_API_ENABLED": "true",
        "HF_TOKEN": "hf_secret_test_token",
    },
    "lmi": {
        "HF_MODEL_ID": MODEL_ID,
        "TENSOR_PARALLEL_DEGREE": "max",
        "OPTION_MAX_MODEL_LEN": "8192",
        "HF_TOKEN": "hf_secret_test_token",
    },
}


@pytest.mark.parametrize("backend", ["tgi", "lmi"])
def test_deploy_creates_the_model_endpoint_config_and_endpoint(
    aws: None, sdk: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_test_token")
    assert deploy.main(deploy_argv(backend)) == 0
    out, err = capsys.readouterr()

    client = boto3.client("sagemaker", region_name=REGION)
    endpoint = client.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService"
    config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    [variant] = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == (INSTANCE_TYPE, 2)
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 900
    assert [model["ModelName"] for model in sagemaker_resources()["models"]] == [variant["ModelName"]]

    model = client.describe_model(ModelName=variant["ModelName"])
    assert model["ExecutionRoleArn"] == ROLE
    container = model["PrimaryContainer"]
    assert container["Image"] == deploy.image_uri(deploy.parse_args(deploy_argv(backend)), sdk)
    assert ECR_IMAGE.match(container["Image"])["region"] == REGION  # type: ignore[index]
    # the SDK adds its SAGEMAKER_* variables; the rest is deploy.py's, token included
    own = {
        name: value for name, value in container["Environment"].items() if not name.startswith("SAGEMAKER_")
    }
    assert own == ENVIRONMENTS[backend]

    # stdout is the catalog entry alone (the SDK's progress goes to stderr); the token is in neither
    entry = json.loads(out)
    assert entry["engine"] == "sagemaker"
    assert entry["target"] == {"endpointName": ENDPOINT}
    assert f"Endpoint {ENDPOINT} is InService." in err
    assert '"HF_TOKEN": "***"' in err
    assert "hf_secret_test_token" not in out + err


def test_printed_entry_is_accepted_by_the_services_catalog(
    aws: None, sdk: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's path: the shipped catalog plus the entry, in the catalog SSM parameter."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert deploy.main(deploy_argv()) == 0
    entry = json.loads(capsys.readouterr().out)

    shipped = json.loads(resources.files("promptsvc.data").joinpath("models.json").read_text())
    assert MODEL_ID not in {model["id"] for model in shipped["models"]}
    catalog_json = json.dumps({**shipped, "models": [*shipped["models"], entry]})
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/promptsvc/test/models", Value=catalog_json, Type="String"
    )
    catalog = CatalogSource(ssm_parameter="/promptsvc/test/models").get()

    model = catalog.resolve(MODEL_ID)
    assert (model.engine, model.api, model.target) == ("sagemaker", "chat", {"endpointName": ENDPOINT})
    assert (model.name, model.template, model.parameters) == ("Tiny-LLM-7B", "{prompt}", {"max_tokens": 1024})
    assert (model.call_timeout, model.stall_timeout) == (300.0, 60.0)
    assert catalog.default_model_id == shipped["defaultModelId"]
    assert set(catalog.models) == {model["id"] for model in shipped["models"]} | {MODEL_ID}
    # the endpoint the service will invoke is the one deployed
    described = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointStatus"] == "InService"


# --- the dry run ----------------------------------------------------------------------------------


def test_dry_run_calls_no_aws_api(
    aws: None, sdk: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = aws_calls(monkeypatch)
    argv = [*deploy_argv(), "--dry-run"]
    assert deploy.main(argv) == 0
    out, err = capsys.readouterr()
    assert calls == []

    assert sagemaker_resources() == {"models": [], "endpointConfigs": [], "endpoints": []}
    plan = json.loads(err.split("Would deploy ", 1)[1].split("\nAdd this entry", 1)[0])
    assert plan["image"] == deploy.image_uri(deploy.parse_args(argv), sdk)  # looked up offline
    assert (plan["endpointName"], plan["instanceType"], plan["role"]) == (ENDPOINT, INSTANCE_TYPE, ROLE)
    assert json.loads(out)["target"] == {"endpointName": ENDPOINT}


def test_cli_dry_run_prints_only_the_entry_on_stdout(sdk_config: dict[str, str]) -> None:
    """As a command, with the SDK imported for the image: its config logs go to stderr, not into the
    entry; an AWS endpoint that refuses connections shows that no AWS API is called."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "HF_"))}
    env |= sdk_config | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--model-id", MODEL_ID, "--region", REGION, "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout)["target"] == {"endpointName": ENDPOINT}
    assert "sagemaker.config INFO" in done.stderr
    image = re.search(r'"image": "([^"]+)"', done.stderr)
    assert image and ECR_IMAGE.match(image[1])
