"""The one config type shared by the CLI, the Python API and the app.

Every job (simulate, preprocess, train, evaluate, compare, couple, import) has one frozen
dataclass deriving from :class:`JobConfig`. The CLI builds it from arguments, the app from
widgets, scripts directly; it serialises to JSON for run cards and hashes into cache keys.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from brainviz._io import content_hash
from brainviz.errors import ConfigError

T = TypeVar("T", bound="JobConfig")


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """Base class: JSON round-trip, validation hook and a content key."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field when a value is invalid."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                v = values[f.name]
                kwargs[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kwargs)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    def key(self) -> str:
        """Content hash of the config (class name included)."""
        return content_hash(type(self).__name__, self.to_dict())
