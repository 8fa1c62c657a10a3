"""benchmarks/aws_calls.py on moto: the requests it measures are warm however long a run lasts, so
a key read again once its cache ran out (a keys-table GetItem, 1 item read) never lands in a list
page's count (where it made a page at its ceiling read 1,002 items of 1,001, on a loaded machine)."""

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from unittest import mock

from promptsvc import wiring
from promptsvc.adapters import clients
from promptsvc.domain.keys import Role
from promptsvc.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aws_calls", ROOT / "benchmarks" / "aws_calls.py")
    assert spec is not None and spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    return benchmark


def test_a_request_minutes_after_its_keys_first_reads_no_key(aws: None) -> None:
    """The benchmark's function, its key cached by a first request; ten minutes on (a slow run,
    past the default KEY_CACHE_SECONDS of 60), a request reads nothing to authenticate."""
    with mock.patch.dict(os.environ):  # the benchmark sets its environment at import and set-up
        benchmark = load_benchmark()
        settings = benchmark.api_settings()
        try:
            now = [0.0]
            keys = wiring.key_service(settings, lambda: now[0])
            keys.bootstrap(benchmark.LIST_KEY, benchmark.LIST_USER, Role.USER)
            meter = benchmark.Meter()
            meter.install()
            _, first = meter.measure(lambda: keys.authenticate(f"Bearer {benchmark.LIST_KEY}"))
            assert first.items_read == 1  # the key's first request reads it
            now[0] += 600.0
            _, later = meter.measure(lambda: keys.authenticate(f"Bearer {benchmark.LIST_KEY}"))
            assert (later.items_read, later.dynamodb_calls) == (0, 0)
        finally:
            clients.clear_hooks()
            get_settings.cache_clear()
