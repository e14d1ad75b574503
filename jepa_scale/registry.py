"""Name -> builder tables keyed by names the configs already carry (timm's `register_model`, in ~30 lines)."""
from __future__ import annotations

import difflib


class UnknownName(KeyError):
    """A config names a backbone, recipe or task that is not registered; the message offers the closest one."""

    def __str__(self):
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key  # e.g. "backbone", "model.model_name"
        self._items: dict[str, object] = {}

    def register(self, name: str):
        def add(obj):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj
        return add

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name) -> bool:
        return name in self._items

    def unknown(self, name) -> str:
        """The message for a name that is not registered: the closest one, else all of them."""
        close = difflib.get_close_matches(str(name), self.names(), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of {', '.join(self.names())}"
        return f"unknown {self.kind} {name!r} ({hint})"

    def get(self, name: str):
        if name not in self._items:
            raise UnknownName(f"{self.key}: {self.unknown(name)}")
        return self._items[name]
