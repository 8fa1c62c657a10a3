"""Every settings group reads its fields from the environment by name, in any case; values given
to the constructor come first; nothing else is read (no `.env` file, no secrets directory)."""

from pathlib import Path

import pytest
from promptsvc.settings import Settings
from promptsvc.settings.engines import EngineSettings
from pydantic import ValidationError


def test_a_setting_is_read_from_its_variable_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTS_TABLE", "upper")
    monkeypatch.setenv("lease_seconds", "12.5")
    settings = Settings()
    assert (settings.prompts_table, settings.lease_seconds) == ("upper", 12.5)


def test_the_constructors_values_come_before_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTS_TABLE", "from-environment")
    monkeypatch.setenv("KEYS_TABLE", "keys")
    settings = Settings(prompts_table="given")
    assert (settings.prompts_table, settings.keys_table) == ("given", "keys")


def test_a_value_out_of_its_bounds_fails_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRASH_LIMIT", "0")
    with pytest.raises(ValidationError, match="crash_limit"):
        Settings()


def test_a_dotenv_file_and_a_secrets_directory_are_not_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROMPTS_TABLE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PROMPTS_TABLE=from-dotenv\n")
    (tmp_path / "prompts_table").write_text("from-secrets")
    assert Settings(_env_file=".env", _secrets_dir=str(tmp_path)).prompts_table == ""


def test_the_mock_engines_settings_are_read_when_first_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    engines = EngineSettings()
    monkeypatch.setenv("MOCK_CHUNKS", "7")
    assert engines.mock.mock_chunks == 7
    assert engines.mock is engines.mock
