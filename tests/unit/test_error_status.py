"""The HTTP status of a domain error is that of its nearest class the API maps, so a new subclass
(an ItemTooLarge, a registry's Unprocessable) keeps its base's kind instead of falling to 400."""

from promptsvc.api.errors import status_of
from promptsvc.domain.errors import Conflict, DomainError, ItemTooLarge, NotFound, Unprocessable


class GoneForGood(NotFound):
    pass


def test_a_subclass_has_its_bases_status() -> None:
    assert status_of(GoneForGood("x")) == 404
    assert status_of(ItemTooLarge("x", size=500_000)) == 413
    assert status_of(Unprocessable("x")) == 400  # the /v2 routes make it a 422 themselves
    assert status_of(Conflict("x")) == 409


def test_an_unmapped_domain_error_is_a_400() -> None:
    assert status_of(DomainError("x")) == 400
