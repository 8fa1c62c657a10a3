"""The API, beside a running `promptsvc dev` and against its moto, in a process that is killed
(SIGKILL, as the OOM killer or a Lambda timeout ends one) right after a prompt is stored and before
its message is sent: the crash between the add's two writes.

    python tests/e2e/crashing_api.py DEV_STATE_FILE PORT

DEV_STATE_FILE is what that `promptsvc dev` wrote (`$PROMPTSVC_DEV_STATE`): its moto endpoint and
its functions' environment.
"""

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any


def main() -> None:
    state = json.loads(Path(sys.argv[1]).read_text())
    os.environ.update(state["environment"])

    import uvicorn
    from promptsvc.adapters import prompt_queue
    from promptsvc.api.app import create_app

    def killed(*args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    prompt_queue.SqsPromptQueue.send = killed  # type: ignore[method-assign]
    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")


if __name__ == "__main__":
    main()
