"""Prompt templates (promptsvc.domain.template)."""

import pytest
from promptsvc.domain.template import render


@pytest.mark.parametrize(
    ("template", "prompt", "expected"),
    [
        ("[INST]{prompt}[/INST]", "hi", "[INST]hi[/INST]"),
        ("", "hi", "hi"),
        ("System: be brief.\n", "hi", "System: be brief.\nhi"),  # no placeholder: appended
        ("{prompt} / {prompt}", "x", "x / x"),
        ('{"role": "user", "content": "{prompt}"}', "q", '{"role": "user", "content": "q"}'),
        ("<{prompt}>", "{0} {name} {prompt}", "<{0} {name} {prompt}>"),  # braces in the prompt kept
        ("[{prompt}]", "", "[]"),
    ],
)
def test_render(template: str, prompt: str, expected: str) -> None:
    assert render(template, prompt) == expected
