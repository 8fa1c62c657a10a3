"""docs/configuration.md is what the Settings fields say: a new or changed setting without the
page rewritten (python -m promptsvc_dev.configuration_doc docs/configuration.md) fails here."""

from pathlib import Path

from promptsvc.settings import Settings
from promptsvc.settings.engines import EngineSettings
from promptsvc.settings.mock_engine import MockEngineSettings
from promptsvc.settings.worker import WorkerSettings
from promptsvc_dev.configuration_doc import render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_page_is_written_from_the_settings() -> None:
    assert PAGE.read_text() == render()


def test_every_setting_is_on_the_page_with_its_description() -> None:
    page = PAGE.read_text()
    groups = {"engines", "worker"}  # Settings' groups: their own fields are the rows
    for group in (Settings, EngineSettings, MockEngineSettings, WorkerSettings):
        for name, field in group.model_fields.items():
            assert field.description, f"{name} has no description"
            assert name in groups or f"| `{name.upper()}` |" in page
