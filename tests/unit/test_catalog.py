"""The model catalog (promptsvc.domain.catalog)."""

import json
from pathlib import Path
from typing import Any

import pytest
from promptsvc.domain.catalog import Catalog, Model
from promptsvc.domain.errors import InvalidRequest

DATA: dict[str, Any] = {
    "defaultModelId": "b/model",
    "models": [
        {"id": "a/model"},
        {"id": "b/model", "name": "B", "template": "[{prompt}]", "engine": "openai", "target": {"x": 1}},
    ],
}


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.from_dict(DATA)


def test_resolve_known_model(catalog: Catalog) -> None:
    assert catalog.resolve("b/model") == Model("b/model", "B", "[{prompt}]", "openai", {"x": 1}, {})


def test_model_defaults(catalog: Catalog) -> None:
    assert catalog.resolve("a/model") == Model("a/model", "a/model", "", "mock", {}, {})


@pytest.mark.parametrize("model_id", [None, ""])
def test_empty_model_id_is_the_default(catalog: Catalog, model_id: str | None) -> None:
    assert catalog.resolve(model_id).id == "b/model"


def test_unknown_model_lists_the_known_ones(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest) as error:
        catalog.resolve("c/model")
    message = str(error.value)
    assert "'c/model'" in message
    assert "a/model, b/model" in message


def test_default_is_the_first_model_when_not_given() -> None:
    assert Catalog.from_dict({"models": DATA["models"]}).default_model_id == "a/model"


def test_default_must_exist() -> None:
    with pytest.raises(ValueError, match="nope"):
        Catalog.from_dict({"defaultModelId": "nope", "models": DATA["models"]})


def test_load_from_path(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(DATA))
    assert Catalog.load(str(path)) == Catalog.from_dict(DATA)


def test_shipped_catalog() -> None:
    shipped = Catalog.load()
    assert shipped.default_model_id in shipped.models
    assert shipped.resolve(None).id == shipped.default_model_id
    assert all(model.id == model_id for model_id, model in shipped.models.items())
    with pytest.raises(InvalidRequest) as error:
        shipped.resolve("no/such-model")
    assert all(model_id in str(error.value) for model_id in shipped.models)
