"""Python's garbage collector around a Lambda function's init.

An init allocates what lives as long as its execution environment: modules, classes, the app, the
clients, the settings. Collecting is work with nothing to free there, yet the collector runs
anyway, counting allocations: an init here ran about a hundred young collections and ten of the
middle generation (about 20 ms) and, where the count happened to cross the threshold of a full
collection, one of the whole heap (about 20 ms more; whether it falls in an init depends on how
many objects its dependencies allocated before it, not on what the init does). With the collector
paused the API's init took 398 ms instead of 437, the consumer's with tracing on 292 instead of 333
(benchmarks/cold_start.py, one run each).

So each handler module pauses the collector before its first import (`pause`) and, when its init
is done (`resume`), freezes what the init allocated (`gc.freeze`: moved to the permanent
generation, which no later collection scans, so the invocations' full collections walk only what
they allocated) and turns the collector back on. What the init left as cyclic garbage stays
allocated: about 800 objects here, once per environment.

Only inside Lambda (`LAMBDA_TASK_ROOT` set): the tests and `promptsvc dev` load the handler modules
again and again in one long process, whose objects a freeze would keep for good.
"""

import gc
import os


def _in_lambda() -> bool:
    return bool(os.getenv("LAMBDA_TASK_ROOT"))


def pause() -> None:
    """The first statement of a handler module: no collection during the init."""
    if _in_lambda():
        gc.disable()


def resume() -> None:
    """The last statement of a handler module: the init's objects frozen, the collector back on."""
    if _in_lambda():
        gc.freeze()
        gc.enable()
