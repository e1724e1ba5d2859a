"""A small ordered, case-insensitive header list, and Go-style name canonicalisation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def canonical(name: str) -> str:
    """Canonicalise a header name the way Go's ``http.Header`` does (``x-foo`` -> ``X-Foo``)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


class Headers:
    """Request headers: duplicates and order kept, lookups case-insensitive."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, str] = {}
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append a header; the first value of a name is the one ``get`` returns."""
        self._items.append((name, value))
        self._index.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of ``name`` (any case), or ``default``."""
        return self._index.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def merged(self, extra: Iterable[tuple[str, str]]) -> Headers:
        """Return a copy with ``extra`` headers added where the name is not already present."""
        out = Headers(self._items)
        for name, value in extra:
            if name not in out:
                out.add(name, value)
        return out


def add_value(target: dict[str, list[str]], name: str, value: str) -> None:
    """Append ``value`` under the canonical form of ``name``."""
    target.setdefault(canonical(name), []).append(value)
