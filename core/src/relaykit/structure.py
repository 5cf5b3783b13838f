"""Field errors for a payload that does not fit a msgspec Struct, worked out from the Struct's
declared structure.

msgspec stops at the first problem and words it in English of its own; relaykit reports every
problem, keyed the way the API keys errors (``amount``, ``parent.child``), in its own words
(the style of :mod:`relaykit.validation`). Nothing here reads msgspec's error messages: each
value is converted alone and, when that fails, the type's declared constraints
(:func:`msgspec.inspect.type_info`) say what is wrong. Messages never repeat a submitted value,
and keys never hold one (a dict's entries are reported under the dict's own key).
"""

from __future__ import annotations

import datetime
import decimal
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.inspect as mi

#: The JSON kinds: the Python type a decoded JSON value has, and how a message names it.
_KIND_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    type(None): "null",
    dict: "an object",
    list: "an array",
}

#: Types that JSON carries as strings (or numbers, for a decimal): the Python type a value is
#: converted to, to see whether it parses, and how a message names it.
_PARSED: dict[type[mi.Type], tuple[type, str]] = {
    mi.DateTimeType: (datetime.datetime, "a date and time"),
    mi.DateType: (datetime.date, "a date"),
    mi.TimeType: (datetime.time, "a time"),
    mi.TimeDeltaType: (datetime.timedelta, "a duration"),
    mi.UUIDType: (uuid.UUID, "a UUID"),
    mi.DecimalType: (decimal.Decimal, "a decimal number"),
    mi.BytesType: (bytes, "base64-encoded bytes"),
    mi.ByteArrayType: (bytearray, "base64-encoded bytes"),
}


def field_errors(
    payload: Mapping[str, Any],
    struct_type: type[msgspec.Struct],
    *,
    rules: Mapping[Any, str] | None = None,
) -> dict[str, list[str]]:
    """Every problem that keeps ``payload`` (decoded JSON) from converting to ``struct_type``,
    keyed by field (``to``, ``metadata``; a nested Struct's as ``parent.child``).

    ``rules`` maps a type (``Annotated[str, Meta(...)]``, say) to the message to give when a
    value declared with it fails, in place of the one worked out: a rule a reader can follow
    (a dict's keys, for instance) is better than one constraint at a time. Empty when every
    field converts on its own (a ``__post_init__`` that refuses the whole, say).
    """
    checker = _Checker(rules or {})
    checker.struct(payload, struct_type, prefix="")
    return checker.errors


@dataclass(frozen=True)
class _Subject:
    """What a message is about: the error key, and how the sentence names the value."""

    key: str
    #: ``The amount field`` or ``Each key in the metadata field``
    text: str
    #: the message for a value that does not match a pattern
    format_invalid: str

    def part(self, part: str) -> _Subject:
        """A key, value or item inside this value: reported under the same key."""
        return _Subject(
            self.key,
            f"Each {part} in the {self.key} field",
            f"The format of each {part} in the {self.key} field is invalid.",
        )


def _field(key: str) -> _Subject:
    return _Subject(key, f"The {key} field", f"The {key} field format is invalid.")


class _Checker:
    """Collects the problems found, each message once per key."""

    def __init__(self, rules: Mapping[Any, str]) -> None:
        self.errors: dict[str, list[str]] = {}
        self.rules = [(_unwrap(mi.type_info(t)), message) for t, message in rules.items()]

    def add(self, key: str, message: str) -> None:
        messages = self.errors.setdefault(key, [])
        if message not in messages:
            messages.append(message)

    def struct(
        self, payload: Mapping[str, Any], struct_type: type[msgspec.Struct], prefix: str
    ) -> None:
        """The problems of each field of ``struct_type`` in ``payload``, keys ``prefix + name``."""
        config = struct_type.__struct_config__
        known: set[str] = set()
        for field in msgspec.structs.fields(struct_type):
            name = field.encode_name
            known.add(name)
            key = prefix + name
            if name not in payload:
                if field.required:
                    self.add(key, f"The {key} field is required.")
                continue
            value = payload[name]
            try:
                msgspec.convert(value, field.type)
            except msgspec.ValidationError:
                before = self._count()
                self.value(value, mi.type_info(field.type), _field(key))
                if self._count() == before:
                    self.add(key, f"The {key} field is invalid.")
        if config.tag_field is not None:
            known.add(config.tag_field)
            if config.tag_field in payload and payload[config.tag_field] != config.tag:
                key = prefix + config.tag_field
                self.add(key, f"The {key} field is invalid.")
        if config.forbid_unknown_fields:
            for name in payload:
                if name not in known:
                    self.add(prefix + str(name), "This field is not allowed.")

    def value(self, value: Any, info: mi.Type, subject: _Subject) -> None:
        """The problems of ``value`` as a ``info``; nothing added when none is found."""
        info = _unwrap(info)
        rule = next((message for declared, message in self.rules if declared == info), None)
        if rule is None:
            self._check(value, info, subject)
        elif self._fails(value, info, subject):
            self.add(subject.key, rule)

    def _fails(self, value: Any, info: mi.Type, subject: _Subject) -> bool:
        """Whether checking ``value`` finds a problem, without keeping what it finds."""
        outer, self.errors = self.errors, {}
        try:
            self._check(value, info, subject)
            return bool(self.errors)
        finally:
            self.errors = outer

    def _count(self) -> int:
        return sum(len(messages) for messages in self.errors.values())

    def _check(self, value: Any, info: mi.Type, subject: _Subject) -> None:
        if isinstance(info, mi.UnionType):
            self._union(value, info, subject)
            return
        if not _is_kind(value, _kinds(info)):
            self.add(subject.key, f"{subject.text} must be {_kind_name(info)}.")
            return
        if isinstance(info, mi.StrType):
            self._string(value, info, subject)
        elif isinstance(info, (mi.IntType, mi.FloatType)):
            self._number(value, info, subject)
        elif isinstance(info, (mi.LiteralType, mi.EnumType)):
            allowed = _choices(info)
            if not any(type(value) is type(choice) and value == choice for choice in allowed):
                shown = ", ".join(msgspec.json.encode(choice).decode() for choice in allowed)
                self.add(subject.key, f"{subject.text} must be one of: {shown}.")
        elif isinstance(info, mi.DictType):
            self._dict(value, info, subject)
        elif isinstance(info, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            self._length(len(value), info.min_length, info.max_length, "items", subject)
            for item in value:
                self.value(item, info.item_type, subject.part("item"))
        elif isinstance(info, mi.TupleType):
            if len(value) != len(info.item_types):
                count = len(info.item_types)
                self.add(subject.key, f"{subject.text} must be an array of {count} items.")
            else:
                for item, item_type in zip(value, info.item_types, strict=True):
                    self.value(item, item_type, subject.part("item"))
        elif isinstance(info, mi.StructType) and not info.array_like:
            self.struct(value, info.cls, prefix=f"{subject.key}.")
        elif type(info) in _PARSED:
            python_type, name = _PARSED[type(info)]
            try:
                msgspec.convert(value, python_type)
            except msgspec.ValidationError:
                self.add(subject.key, f"{subject.text} must be {name}.")

    def _union(self, value: Any, info: mi.UnionType, subject: _Subject) -> None:
        """Checked against the member that takes values of this JSON kind, as msgspec picks."""
        if value is None and info.includes_none:
            return
        members = [_unwrap(t) for t in info.types if not isinstance(_unwrap(t), mi.NoneType)]
        taking = [t for t in members if _is_kind(value, _kinds(t))]
        if len(taking) == 1:
            self.value(value, taking[0], subject)
        elif len(members) == 1:
            self.value(value, members[0], subject)
        elif not taking:
            names = " or ".join(dict.fromkeys(_kind_name(t) for t in members))
            self.add(subject.key, f"{subject.text} must be {names}.")

    def _string(self, value: str, info: mi.StrType, subject: _Subject) -> None:
        if info.min_length is not None and len(value) < info.min_length:
            self.add(subject.key, f"{subject.text} must be at least {info.min_length} characters.")
        if info.max_length is not None and len(value) > info.max_length:
            self.add(
                subject.key,
                f"{subject.text} must not be greater than {info.max_length} characters.",
            )
        if info.pattern is not None and not re.search(info.pattern, value):
            self.add(subject.key, subject.format_invalid)

    def _number(self, value: float, info: mi.IntType | mi.FloatType, subject: _Subject) -> None:
        if info.gt is not None and not value > info.gt:
            self.add(subject.key, f"{subject.text} must be greater than {info.gt}.")
        if info.ge is not None and not value >= info.ge:
            self.add(subject.key, f"{subject.text} must be at least {info.ge}.")
        if info.lt is not None and not value < info.lt:
            self.add(subject.key, f"{subject.text} must be less than {info.lt}.")
        if info.le is not None and not value <= info.le:
            self.add(subject.key, f"{subject.text} must be at most {info.le}.")
        if info.multiple_of is not None and value % info.multiple_of != 0:
            self.add(subject.key, f"{subject.text} must be a multiple of {info.multiple_of}.")

    def _dict(self, value: dict[Any, Any], info: mi.DictType, subject: _Subject) -> None:
        self._length(len(value), info.min_length, info.max_length, "keys", subject)
        for key, item in value.items():
            self.value(key, info.key_type, subject.part("key"))
            self.value(item, info.value_type, subject.part("value"))

    def _length(
        self, length: int, least: int | None, most: int | None, unit: str, subject: _Subject
    ) -> None:
        if least is not None and length < least:
            self.add(subject.key, f"{subject.text} must have at least {least} {unit}.")
        if most is not None and length > most:
            self.add(subject.key, f"{subject.text} must not have more than {most} {unit}.")


def _unwrap(info: mi.Type) -> mi.Type:
    """The type under any ``Annotated`` metadata that only describes it (a description)."""
    while isinstance(info, mi.Metadata):
        info = info.type
    return info


def _choices(info: mi.LiteralType | mi.EnumType) -> list[Any]:
    """The values taken: a Literal's sorted (by kind, then value), an Enum's in its order."""
    if isinstance(info, mi.LiteralType):
        return sorted(info.values, key=lambda choice: (type(choice).__name__, choice))
    return [member.value for member in info.cls]


def _kinds(info: mi.Type) -> tuple[type, ...]:
    """The Python types of the decoded JSON values ``info`` takes (``object``: any)."""
    info = _unwrap(info)
    if isinstance(info, mi.UnionType):
        return tuple(dict.fromkeys(kind for t in info.types for kind in _kinds(t)))
    if isinstance(info, (mi.StrType, mi.UUIDType, mi.BytesType, mi.ByteArrayType)):
        return (str,)
    if isinstance(info, (mi.DateTimeType, mi.DateType, mi.TimeType, mi.TimeDeltaType)):
        return (str,)
    if isinstance(info, mi.DecimalType):
        return (str, int, float)
    if isinstance(info, mi.IntType):
        return (int,)
    if isinstance(info, mi.FloatType):
        return (int, float)
    if isinstance(info, mi.BoolType):
        return (bool,)
    if isinstance(info, mi.NoneType):
        return (type(None),)
    if isinstance(info, (mi.LiteralType, mi.EnumType)):
        return tuple(dict.fromkeys(type(choice) for choice in _choices(info)))
    if isinstance(info, mi.StructType):
        return (list,) if info.array_like else (dict,)
    if isinstance(info, (mi.DictType, mi.TypedDictType, mi.DataclassType)):
        return (dict,)
    if isinstance(info, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return (list,)
    if isinstance(info, (mi.TupleType, mi.NamedTupleType)):
        return (list,)
    return (object,)


def _is_kind(value: Any, kinds: tuple[type, ...]) -> bool:
    """Whether ``value`` is of one of ``kinds``; ``true`` is not an integer, as in JSON."""
    if object in kinds:
        return True
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def _kind_name(info: mi.Type) -> str:
    """How a message names what ``info`` takes: ``a string``, ``an integer``."""
    info = _unwrap(info)
    if type(info) in _PARSED:
        return _PARSED[type(info)][1]
    if isinstance(info, mi.FloatType):
        return "a number"
    return _KIND_NAMES.get(_kinds(info)[0], "valid")
