"""JSON Schema (2020-12, OpenAPI 3.1's dialect) generated from TypedDict annotations.

/openapi.json describes the event payloads from the very types handler.py builds them
with (walletd/stream/events.py). Handles what those types use: str, int, float, bool,
None, list, Literal, unions, nested TypedDicts (components named after their class),
NotRequired keys, and `Annotated[..., Schema(...)]` for keywords and named components.
"""

from __future__ import annotations

import inspect
import types
from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,
    Required,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from walletd.stream.events import Schema

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


class SchemaBuilder:
    """Turns types into schemas, collecting every named one in `components` once."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def schema(self, tp: Any) -> dict[str, Any]:
        """The schema of `tp`; TypeError for a type this generator does not know."""
        origin = get_origin(tp)
        if origin is Annotated:
            return self._annotated(tp.__origin__, tp.__metadata__)
        if origin in (NotRequired, Required):
            return self.schema(get_args(tp)[0])
        if origin is Literal:
            values = list(get_args(tp))
            return {"const": values[0]} if len(values) == 1 else {"enum": values}
        if origin in (Union, types.UnionType):
            return self._union(get_args(tp))
        if origin is list:
            (item,) = get_args(tp)
            return {"type": "array", "items": self.schema(item)}
        if is_typeddict(tp):
            if tp.__name__ not in self.components:
                self.components[tp.__name__] = {}  # reserved first: a type may recur
                self.components[tp.__name__] = self._object(tp)
            return ref(tp.__name__)
        if tp in _SCALARS:
            return {"type": _SCALARS[tp]}
        raise TypeError(f"no JSON Schema for {tp!r}")

    def _annotated(self, base: Any, metadata: tuple[Any, ...]) -> dict[str, Any]:
        """Keywords up to a named Schema form that component; later ones sit beside
        its `$ref` (allowed in 3.1), so a use can add its own description."""
        marks = [m for m in metadata if isinstance(m, Schema)]
        named = max((i for i, m in enumerate(marks) if m.name), default=-1)
        if named < 0:
            return {**self.schema(base), **_merged(marks)}
        name = marks[named].name
        assert name is not None
        if name not in self.components:
            self.components[name] = {**self.schema(base), **_merged(marks[: named + 1])}
        return {**ref(name), **_merged(marks[named + 1 :])}

    def _union(self, members: tuple[Any, ...]) -> dict[str, Any]:
        others = [m for m in members if m is not type(None)]
        nullable = len(others) < len(members)
        if all(get_origin(m) is Literal for m in others):  # one enum, null among its values
            values = [v for m in others for v in get_args(m)]
            return {"enum": values + [None] * nullable}
        variants = [self.schema(m) for m in others]
        if nullable:
            variants.append({"type": "null"})
        return variants[0] if len(variants) == 1 else {"anyOf": variants}

    def _object(self, tp: Any) -> dict[str, Any]:
        """Every key is a property; keys not marked NotRequired are required. Other
        properties stay allowed: clients must accept fields added later (SPEC §9)."""
        hints = get_type_hints(tp, include_extras=True)
        properties = {key: self.schema(hint) for key, hint in hints.items()}
        required = [key for key in hints if key in tp.__required_keys__]
        out: dict[str, Any] = {"type": "object", "required": required, "properties": properties}
        if tp.__doc__:
            out["description"] = inspect.cleandoc(tp.__doc__)
        return out


def _merged(marks: list[Schema]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mark in marks:
        out.update(mark.keywords)
    return out
