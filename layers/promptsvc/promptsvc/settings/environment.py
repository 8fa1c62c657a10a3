"""How every settings group reads the environment: by the variables' names, any case, no prefix."""

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class FromEnvironment(BaseSettings):
    """A group of settings read from the environment (pydantic-settings)."""

    # Each group's validator is built when the group is first read (at a function's init), this
    # base's never (benchmarks/cold_start.py).
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", defer_build=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The constructor's values, then the environment's: no `.env` file or secrets directory,
        which no function has (each would be read field by field at every cold start)."""
        return init_settings, env_settings
