"""Where the model catalog comes from: an SSM parameter (so operators change models without a
deploy), else a file, else the catalog shipped in the package. SSM values are cached for a few
minutes by Powertools, so a warm function sees a change within `max_age` seconds."""

from promptsvc.adapters.clients import parameter_value
from promptsvc.domain.catalog import Catalog


class CatalogSource:
    def __init__(self, ssm_parameter: str = "", file: str = "", *, max_age: int = 300) -> None:
        self._parameter = ssm_parameter
        self._file = file
        self._max_age = max_age
        self._static: Catalog | None = None
        self._last_text: str | None = None
        self._last: Catalog | None = None

    def get(self) -> Catalog:
        if not self._parameter:
            if self._static is None:
                self._static = Catalog.load(self._file or None)
            return self._static
        text = parameter_value(self._parameter, self._max_age)
        if text != self._last_text or self._last is None:
            self._last, self._last_text = Catalog.from_json(text), text
        return self._last
