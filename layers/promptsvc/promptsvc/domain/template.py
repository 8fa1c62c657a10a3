"""Prompt templates: `{prompt}` marks where the user's prompt goes (e.g. `[INST]{prompt}[/INST]`)."""

PLACEHOLDER = "{prompt}"


def render(template: str, prompt: str) -> str:
    """Substitute the prompt into the template.

    Plain replacement, not `str.format`: prompts and chat templates are full of braces.
    A template without the placeholder gets the prompt appended.
    """
    if not template:
        return prompt
    if PLACEHOLDER not in template:
        return template + prompt
    return template.replace(PLACEHOLDER, prompt)
