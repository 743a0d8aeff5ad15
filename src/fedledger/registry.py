"""One registry per kind of plug-in (protocols, models, datasets, partitioners, ...).

A component is a factory plus a pydantic model of its parameters, so a config can name a
component, give its parameters, and get errors that name the bad key and what is allowed.
Adding a component is one class (or function) plus one ``register`` line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from fedledger.errors import ConfigError, UnknownComponentError

T = TypeVar("T")


class NoParams(BaseModel):
    """Parameters of a component that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Component(Generic[T]):
    """A registered plug-in: its name, factory, parameter model and one-line summary."""

    name: str
    factory: Callable[..., T]
    params: type[BaseModel]
    summary: str


def format_validation_error(where: str, err: ValidationError) -> str:
    """Render pydantic errors as ``where.key: message (got value)`` lines."""
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"])
        key = f"{where}.{loc}" if where and loc else (where or loc)
        got = item.get("input")
        got_text = "" if item["type"] == "missing" else f" (got {got!r})"
        lines.append(f"{key}: {item['msg']}{got_text}" if key else f"{item['msg']}{got_text}")
    return "; ".join(lines)


def validate_params(model: type[BaseModel], values: Mapping[str, Any], where: str) -> BaseModel:
    """Validate ``values`` against ``model``; raise ConfigError naming ``where``."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as err:
        raise ConfigError("", format_validation_error(where, err)) from None


class Registry(Generic[T]):
    """Named components of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Component[T]] = {}

    def add(
        self,
        name: str,
        factory: Callable[..., T],
        params: type[BaseModel] = NoParams,
        summary: str = "",
    ) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        text = summary or next(iter((factory.__doc__ or "").strip().splitlines()), "")
        self._items[name] = Component(name, factory, params, text)

    def register(
        self, name: str, params: type[BaseModel] = NoParams, summary: str = ""
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator form of :meth:`add`."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name, factory, params, summary)
            return factory

        return deco

    def get(self, name: str, where: str = "") -> Component[T]:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownComponentError(self.kind, name, self.names(), where) from None

    def params(self, name: str, values: Mapping[str, Any], where: str = "") -> BaseModel:
        """Validate parameters for component ``name``."""
        return validate_params(self.get(name, where).params, values, where)

    def build(self, name: str, values: Mapping[str, Any] | None = None, where: str = "") -> T:
        """Validate parameters and call the factory with them as keyword arguments."""
        comp = self.get(name, where)
        params = validate_params(comp.params, values or {}, where)
        return comp.factory(**params.model_dump())

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Component[T]]:
        return iter(self._items[n] for n in self.names())
