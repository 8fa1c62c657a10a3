"""Names users choose (prompt ids, thread ids) live in their owner's namespace.

Every table key built from such a name is `owner#name`, so two users can pick the same prompt id
or thread id independently, and neither can find, block or number anything of the other's. Owner
ids and names both match `ID_PATTERN` (no `#`), so a scoped key splits back unambiguously.
"""

SEPARATOR = "#"
# Ids chosen by clients end up inside composite index keys joined with '#': keep them plain.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


def composite(*parts: object) -> str:
    """Every composite key (`owner#name`, `userId#status`, `createdAt#id`): the parts joined."""
    return SEPARATOR.join(str(part) for part in parts)


def scoped(owner: str, name: str) -> str:
    """The table key of `name` in `owner`'s namespace."""
    return composite(owner, name)


def unscoped(key: str) -> tuple[str, str]:
    """(owner, name) of a scoped key."""
    owner, _, name = key.partition(SEPARATOR)
    return owner, name
