"""Domain errors. The API maps each to an HTTP status; the consumer maps them to outcomes."""


class DomainError(Exception):
    """Base class; `str(error)` is a message safe to show to the caller."""


class InvalidRequest(DomainError):
    """The request is malformed or names something that does not exist (HTTP 400)."""


class Unprocessable(InvalidRequest):
    """Well-formed but invalid content (HTTP 422 on /v2; 400 where the API has no 422)."""


class PayloadTooLarge(DomainError):
    """The request exceeds a size limit (HTTP 413)."""


class NotFound(DomainError):
    """No such resource visible to the caller (HTTP 404); also used for other users' resources."""


class Conflict(DomainError):
    """The request conflicts with the stored state (HTTP 409)."""


class Forbidden(DomainError):
    """The caller is authenticated but may not do this (HTTP 403)."""


class Unauthorized(DomainError):
    """Missing or unknown credentials (HTTP 401)."""


class DeadlinePassed(Exception):
    """A write was not made because its writer's deadline (a run's lease fence) had passed: past
    it another consumer may run the prompt, and a late write would land among its events."""


class ItemTooLarge(PayloadTooLarge):
    """A write would make a stored item larger than DynamoDB allows (domain.item_size); nothing was
    sent. `size` is what the item would have been, in bytes."""

    def __init__(self, message: str, *, size: int = 0) -> None:
        super().__init__(message)
        self.size = size
