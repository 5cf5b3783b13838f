"""Pages of a list, as every list endpoint of the API pages: ``page`` from 1, ``per_page``
from 1 to 100 (default 25), newest rows last (ids are ULIDs, so id order is creation order)."""

from __future__ import annotations

import math
import re
from typing import Any, Generic, TypeVar

import msgspec

from relaykit.errors import ValidationError

DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100
#: No list holds more rows than this many pages of the largest size; a larger page number
#: is refused rather than handed to the database as an offset it cannot hold.
MAX_PAGE = 1_000_000_000

T = TypeVar("T")
_ID = re.compile(r"^[0-9a-z]{26}$")


class Page(msgspec.Struct, Generic[T], frozen=True):
    items: list[T]
    total: int
    page: int
    per_page: int

    @property
    def last_page(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def check_page(page: int, per_page: int, errors: dict[str, list[str]] | None = None) -> None:
    """Add page/per_page problems to ``errors``, or raise them when no dict is given."""
    found: dict[str, list[str]] = {} if errors is None else errors
    if not 1 <= page <= MAX_PAGE:
        found["page"] = [f"The page must be between 1 and {MAX_PAGE}."]
    if not 1 <= per_page <= MAX_PER_PAGE:
        found["per_page"] = [f"The per_page must be between 1 and {MAX_PER_PAGE}."]
    if errors is None and found:
        raise ValidationError(found)


def check_id(name: str, value: str | None, kind: str, errors: dict[str, list[str]]) -> None:
    """A filter that must be an id (of a ``kind``: "an integration", "an operation")."""
    if value is not None and not is_id(value):
        errors[name] = [f"The {name} must be {kind} id."]


def is_id(value: str) -> bool:
    """Whether ``value`` has an id's form (a lowercase ULID); anything else names nothing."""
    return bool(_ID.match(value))


def check_choice(
    name: str, value: Any, choices: list[str] | tuple[str, ...], errors: dict[str, list[str]]
) -> None:
    if value is not None and value not in choices:
        errors[name] = [f"The selected {name} is invalid. Use one of: {', '.join(choices)}."]
