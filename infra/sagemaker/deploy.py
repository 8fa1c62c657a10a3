#!/usr/bin/env python3
"""Deploy a Hugging Face LLM to a SageMaker real-time endpoint for promptsvc, with the SageMaker
Python SDK, and print the model catalog entry that points promptsvc at it.

    python infra/sagemaker/deploy.py --model-id meta-llama/Llama-3.1-8B-Instruct \\
        --role arn:aws:iam::123456789012:role/SageMakerExecution --region us-east-1 --dry-run

The container is TGI (Hugging Face LLM DLC, `--backend tgi`) or LMI (DJL Large Model Inference,
`--backend lmi`); both serve the Messages API that catalog `"api": "chat"` speaks. A gated model
(Llama) needs a Hugging Face token: export HF_TOKEN (it is not a flag, to keep it out of shell
history and process lists).

The SDK is imported only when needed (the image lookup and the deploy): it is the optional extra
`promptsvc[sagemaker]`, not a dependency of the service. `--dry-run` prints the plan and the catalog
entry without calling AWS, and works without the SDK when `--image-uri` is given (otherwise it
resolves the image URI if it can).
For autoscaling and a least-privilege role, prefer `endpoint.yaml` (see README.md). Only the
catalog entry goes to stdout (the SDK's logs and progress go to stderr), so `> entry.json` works.
"""

import argparse
import contextlib
import json
import os
import re
import sys
from typing import Any

SDK_HINT = (
    "deploy.py needs the SageMaker Python SDK v2: pip install -e '.[sagemaker]' in the repository "
    "(promptsvc[sagemaker], which is 'sagemaker>=2.257,<3')"
)
DEFAULT_LMI_VERSION = "latest"  # the SDK's newest djl-lmi image; pin with --image-version


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-id", required=True, help="Hugging Face Hub model id")
    parser.add_argument("--endpoint-name", help="default: promptsvc-<model id slug>")
    parser.add_argument("--instance-type", default="ml.g5.2xlarge", help="a GPU instance type")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--num-gpus", type=int, default=1, help="GPUs to shard over (TGI SM_NUM_GPUS)")
    parser.add_argument("--backend", choices=["tgi", "lmi"], default="tgi", help="the serving container")
    parser.add_argument("--image-uri", help="use this container image instead of looking it up")
    parser.add_argument("--image-version", help="container version to look up (default: the newest)")
    parser.add_argument("--max-input-tokens", type=int, default=4096)
    parser.add_argument("--max-total-tokens", type=int, default=8192)
    parser.add_argument("--startup-timeout", type=int, default=900, help="seconds to load the model")
    parser.add_argument("--role", help="SageMaker execution role ARN (default: the SDK's, in SageMaker)")
    parser.add_argument(
        "--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    parser.add_argument("--api", choices=["chat", "tgi"], default="chat", help="the catalog entry's api")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; call no AWS API")
    return parser.parse_args(argv)


def endpoint_name_for(model_id: str) -> str:
    """promptsvc-<slug>: template.yaml lets the consumer invoke endpoints with this prefix."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", model_id.split("/")[-1]).strip("-").lower()
    return f"promptsvc-{slug}"[:63].rstrip("-")


def container_env(args: argparse.Namespace) -> dict[str, str]:
    env = {"HF_MODEL_ID": args.model_id}
    if args.backend == "tgi":
        env |= {
            "SM_NUM_GPUS": str(args.num_gpus),
            "MAX_INPUT_TOKENS": str(args.max_input_tokens),
            "MAX_TOTAL_TOKENS": str(args.max_total_tokens),
            "MESSAGES_API_ENABLED": "true" if args.api == "chat" else "false",
        }
    else:
        env |= {"TENSOR_PARALLEL_DEGREE": "max", "OPTION_MAX_MODEL_LEN": str(args.max_total_tokens)}
    if os.environ.get("HF_TOKEN"):
        env["HF_TOKEN"] = os.environ["HF_TOKEN"]
    return env


def catalog_entry(args: argparse.Namespace, endpoint_name: str) -> dict[str, Any]:
    """The entry to add to the model catalog (models.json, or the catalog SSM parameter)."""
    return {
        "id": args.model_id,
        "name": args.model_id.split("/")[-1],
        # chat: the container applies the model's chat template; tgi: fill in the model's template
        "template": "{prompt}",
        "engine": "sagemaker",
        "target": {"endpointName": endpoint_name},
        "api": args.api,
        "parameters": {"max_tokens": 1024},
        "timeouts": {"callSeconds": 300, "stallSeconds": 60},
    }


def import_sdk() -> Any:
    """The SageMaker SDK, imported on first need (it is the optional extra promptsvc[sagemaker])."""
    try:  # its config logger writes to the stdout of import time: make that stderr
        with contextlib.redirect_stdout(sys.stderr):
            import sagemaker
            import sagemaker.huggingface
            import sagemaker.image_uris
    except ImportError as error:  # v3 dropped sagemaker.huggingface: v2 it is
        raise SystemExit(f"{SDK_HINT} ({error})") from None
    return sagemaker


def image_uri(args: argparse.Namespace, sdk: Any) -> str:
    """The region's TGI or LMI image, from the SDK's image tables (no AWS call)."""
    if args.backend == "tgi":
        return sdk.huggingface.get_huggingface_llm_image_uri(
            "huggingface", region=args.region, version=args.image_version
        )
    # get_huggingface_llm_image_uri("lmi") still defaults to an old DeepSpeed image; the current
    # LMI images are the SDK's "djl-lmi" framework.
    return sdk.image_uris.retrieve(
        framework="djl-lmi", region=args.region, version=args.image_version or DEFAULT_LMI_VERSION
    )


def deploy(args: argparse.Namespace, sdk: Any, image: str, env: dict[str, str], endpoint_name: str) -> None:
    import boto3  # with the SDK, boto3 is there too

    boto_session = boto3.Session(region_name=args.region)
    session = sdk.Session(boto_session=boto_session)
    role = args.role or sdk.get_execution_role(sagemaker_session=session)
    model = sdk.huggingface.HuggingFaceModel(image_uri=image, env=env, role=role, sagemaker_session=session)
    with contextlib.redirect_stdout(sys.stderr):  # the SDK prints its progress (-----!) on stdout
        model.deploy(
            initial_instance_count=args.instance_count,
            instance_type=args.instance_type,
            endpoint_name=endpoint_name,
            container_startup_health_check_timeout=args.startup_timeout,
            wait=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    endpoint_name = args.endpoint_name or endpoint_name_for(args.model_id)
    env = container_env(args)
    if not args.region and not args.dry_run:
        raise SystemExit("--region (or AWS_REGION) is required")

    if args.image_uri:
        image = args.image_uri
    elif not args.dry_run:
        image = image_uri(args, import_sdk())
    else:  # a plan needs no SDK: show the image if it can be looked up offline
        try:
            image = image_uri(args, import_sdk()) if args.region else "<looked up for the region>"
        except SystemExit:
            image = f"<looked up with the SageMaker SDK at deploy time; {SDK_HINT}>"

    shown_env = {name: ("***" if name == "HF_TOKEN" else value) for name, value in env.items()}
    plan = {
        "endpointName": endpoint_name,
        "region": args.region,
        "instanceType": args.instance_type,
        "instanceCount": args.instance_count,
        "image": image,
        "environment": shown_env,
        "role": args.role or "<the SDK's execution role>",
    }
    print(("Would deploy " if args.dry_run else "Deploying ") + json.dumps(plan, indent=2), file=sys.stderr)
    if not args.dry_run:
        deploy(args, import_sdk(), image, env, endpoint_name)
        print(f"Endpoint {endpoint_name} is InService.", file=sys.stderr)

    print("Add this entry to the model catalog:", file=sys.stderr)
    print(json.dumps(catalog_entry(args, endpoint_name), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
