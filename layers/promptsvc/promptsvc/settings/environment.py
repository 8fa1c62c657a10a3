"""How every settings group reads the environment: by the variables' names, any case, no prefix."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class FromEnvironment(BaseSettings):
    """A group of settings read from the environment (pydantic-settings)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")
