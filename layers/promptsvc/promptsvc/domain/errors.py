"""Domain errors. The API maps each to an HTTP status; the consumer maps them to outcomes."""


class DomainError(Exception):
    """Base class; `str(error)` is a message safe to show to the caller."""


class InvalidRequest(DomainError):
    """The request is malformed or names something that does not exist (HTTP 400)."""


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
