"""`unmapped`, `allow_failure`, `quote`, `opaque`: tiny immutable wrappers around call arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class unmapped(Generic[T]):  # noqa: N801 - Prefect's spelling
    """In `.map()`: pass `value` whole to every child instead of iterating it."""

    value: T

    def unwrap(self) -> T:
        return self.value


@dataclass(frozen=True, slots=True)
class allow_failure(Generic[T]):  # noqa: N801
    """The downstream runs even if this upstream failed; it then gets the exception."""

    value: T

    def unwrap(self) -> T:
        return self.value


@dataclass(frozen=True, slots=True)
class quote(Generic[T]):  # noqa: N801
    """Pass `value` through as it is, without looking inside it for futures."""

    value: T

    def unwrap(self) -> T:
        return self.value

    def unquote(self) -> T:
        """Prefect's name for `unwrap()`."""
        return self.value


@dataclass(frozen=True, slots=True)
class opaque(Generic[T]):  # noqa: N801
    """A future (or a state read from one) given as its result, and anything else as it is,
    without looking inside for more futures (Prefect 3.8's: a large result is not walked)."""

    value: T

    def unwrap(self) -> T:
        return self.value
