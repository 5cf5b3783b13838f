"""Request bodies: declared as :mod:`relaykit.wire` Structs, decoded strictly, validated whole.

A handler takes ``data: Body[CreateIntegration]`` (a :class:`Sent`): the OpenAPI document
shows the Struct as the request body, and :class:`SentBody` (a Litestar DTO) decodes the raw
bytes with msgspec into it (strict: no ``"5"`` for ``5``, unknown fields refused). What the
handler passes on is ``data.fields``, the fields as sent, which the services validate as a
whole so that every problem of a request comes back at once in the contract's 422.

When the strict decode fails, the body is decoded as plain JSON instead and handed on as
such: the services' validation, which knows what each field means (the provider's credential
schema, the tenant's integrations), reports every problem, keyed by field. Each request
Struct is written to accept exactly what that validation accepts, so the two never disagree
on whether a body is valid; only the fast path is typed.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar.dto import AbstractDTO
from litestar.enums import RequestEncodingType
from litestar.params import BodyKwarg
from litestar.typing import FieldDefinition

from relaykit.errors import ValidationError
from relaykit.wire import sent_fields
from relaykit_server.errors import MalformedBodyError

T = TypeVar("T", bound=msgspec.Struct)

NOT_AN_OBJECT = {"body": ["The request body must be a JSON object."]}
TOO_DEEP = {"body": ["The request body is nested too deeply."]}


class Sent(Generic[T]):
    """A request body as sent: ``fields`` by wire name (what was not sent left out), and
    ``typed``, the body as its Struct, or ``None`` when it did not decode as one (then the
    services' validation explains why)."""

    __slots__ = ("fields", "typed")

    def __init__(self, fields: dict[str, Any], typed: T | None) -> None:
        self.fields = fields
        self.typed = typed


#: A handler's ``data``: ``data: Body[CreateIntegration]`` (the body marker Litestar wants).
Body = Annotated[Sent[T], BodyKwarg(media_type=RequestEncodingType.JSON)]


def decode_object(body: bytes) -> dict[str, Any]:
    """``body`` as a plain JSON object: 400 if it is not JSON, 422 if it is not an object
    or is nested past the decoder."""
    if not body.strip():
        raise ValidationError(NOT_AN_OBJECT)
    try:
        loose = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise MalformedBodyError("The request body is not valid JSON.") from None
    except RecursionError:
        raise ValidationError(TOO_DEEP) from None
    if not isinstance(loose, dict):
        raise ValidationError(NOT_AN_OBJECT)
    return loose


def decode_body(body: bytes, struct_type: type[T]) -> Sent[T]:
    """``body`` as ``struct_type`` when it decodes as one, else as a plain JSON object."""
    try:
        typed = msgspec.json.decode(body, type=struct_type)
    except msgspec.ValidationError:
        return Sent(decode_object(body), None)
    except (msgspec.DecodeError, RecursionError):
        decode_object(body)  # raises the 400 or 422 that fits
        raise
    return Sent(sent_fields(typed), typed)


def _struct_of(field_definition: FieldDefinition) -> type[msgspec.Struct]:
    """``CreateIntegration`` from the annotation ``Sent[CreateIntegration]``."""
    (inner,) = field_definition.args
    if not (isinstance(inner, type) and issubclass(inner, msgspec.Struct)):
        raise TypeError(f"Sent[...] takes a msgspec Struct, not {inner!r}")
    return inner


class SentBody(AbstractDTO[Any]):
    """Litestar's hook for a handler's ``data``: the Struct for the document, our decoding
    for the request. Set it on a handler as ``dto=SentBody, return_dto=None``."""

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        _struct_of(field_definition)  # fail at start-up on a wrong annotation

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Any:
        struct_type = _struct_of(field_definition)
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(struct_type))

    def decode_bytes(self, value: bytes) -> Any:
        handler = self.asgi_connection.route_handler
        field = handler.parsed_data_field
        assert field is not None
        return decode_body(value, _struct_of(field))

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        # Only a form body reaches this, and no relaykit handler declares one.
        raise ValidationError(NOT_AN_OBJECT)
