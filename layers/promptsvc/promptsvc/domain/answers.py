"""Answers too large for a prompts-table item: the claim-check pattern.

A prompt (up to 256 KB) plus its answer can pass DynamoDB's 400 KB item limit. Then the answer's
body goes to the answers bucket (S3) under `answer_key(...)` and the item keeps only that key
(`Prompt.answerRef`); every read that returns the answer resolves it. An answer is at most
`max_answer_bytes` (a setting, default `DEFAULT_MAX_ANSWER_BYTES`): a longer one stops the
generation and abandons the prompt with `answer_over_maximum(...)` as its error.
"""

DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024  # 1 MiB of UTF-8


def answer_key(user_id: str, prompt_id: str, run_count: int) -> str:
    """Where a run's answer body is kept: one object per user, prompt and run (a later run never
    overwrites an earlier one's body, and a user's bodies share a prefix)."""
    return f"{user_id}/{prompt_id}/{run_count}"


def answer_over_maximum(limit: int) -> str:
    return f"the answer exceeded the maximum answer size of {limit} bytes; generation was stopped"


def answer_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))
