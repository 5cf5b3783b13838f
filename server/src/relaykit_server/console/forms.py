"""The configuration form, built from a provider's ``credential_schema``, and back.

Nothing here knows a provider: any installed provider's schema (a third party's included)
gives its form. What a submitted form becomes is the API's own request body (the dict
``POST /api/v1/integrations`` or ``PATCH …/{id}`` takes), handed to the same service, so
the API's validation and its 422 messages apply unchanged; :func:`field_errors` puts each
message beside its field.

Decisions (docs/console.md):

* A sensitive field is a password input, never prefilled. On edit a blank one keeps the
  stored value; an optional one can be removed with its "Remove the stored value" box.
* Text is taken as typed, but for white space at either end (a pasted key's newline), which
  the console trims; the API would refuse it.
* An ``integer`` field sends a number when the text is one (else the text, which the API
  refuses with its own message); a ``boolean`` field is a checkbox.
* On edit only what changed is sent: a credential field whose value differs, the
  capabilities if the set differs, the metadata if it differs.
* Metadata is key/value rows. A value shown as text is sent as text; a stored value that
  is not a string (a number, a list …) is shown as JSON and read back as JSON. The
  ``verification`` key is relaykit's own and is not in the form (the API ignores it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from relaykit.providers import CredentialField, Provider
from relaykit.validation import RESERVED_METADATA_KEY
from relaykit.wire import Integration

#: The most metadata rows one form may carry (a form can't be made to loop for long). More
#: than the API's metadata limit (16 KB) can hold keys, so every stored key has its row.
MAX_METADATA_ROWS = 4096
#: An integer as the console takes one: ASCII digits, an optional sign (``int()`` alone
#: would take "١٢" and "1_2").
INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
#: Empty rows the form offers for new metadata keys.
SPARE_METADATA_ROWS = 2


class Field(msgspec.Struct, frozen=True):
    """One input of the credentials part of the form."""

    name: str
    #: the HTML id and form name (``cred-<name>``)
    key: str
    label: str
    #: ``text``, ``password``, ``number``, ``checkbox``, or ``keep-or-set`` (a sensitive
    #: boolean on edit: its stored value can't be shown, so it is kept unless a choice is made)
    input_type: str
    required: bool
    sensitive: bool
    description: str | None
    #: what the input shows (never a sensitive field's value)
    value: str
    checked: bool
    pattern_hint: str | None


class MetadataRow(msgspec.Struct, frozen=True):
    index: int
    key: str
    value: str
    #: ``text`` or ``json`` (how the value is read back)
    kind: str


def field_key(name: str) -> str:
    return f"cred-{name}"


#: Words a field name spells in lower case that people write in capitals.
_ACRONYMS = frozenset({"api", "id", "sid", "url", "uri", "sms", "ip", "kms", "otp", "pin"})


def _label(name: str) -> str:
    """``api_key`` → "API key", ``from_number`` → "From number"."""
    words = [word.upper() if word in _ACRONYMS else word for word in name.split("_") if word]
    if not words:
        return name
    first = words[0]
    return " ".join([first[:1].upper() + first[1:], *words[1:]])


def _input_type(spec: CredentialField, editing: bool) -> str:
    if spec.type == "boolean":
        return "keep-or-set" if spec.sensitive and editing else "checkbox"
    if spec.sensitive:
        return "password"
    if spec.type == "integer":
        return "number"
    return "text"


def credential_fields(
    provider: Provider,
    current: Mapping[str, Any] | None = None,
    sent: Mapping[str, Any] | None = None,
) -> list[Field]:
    """The credential inputs of ``provider``'s form: empty (configure), the stored public
    values (edit, ``current``), or what was just sent (a form shown again with its errors;
    a sensitive field is never shown again)."""
    fields = []
    for name, spec in provider.credential_schema.items():
        key = field_key(name)
        value: Any = None
        if sent is not None:
            value = sent.get(key)
        elif current is not None and not spec.sensitive:
            value = current.get(name)
        shown = ""
        if not spec.sensitive and value is not None and spec.type != "boolean":
            shown = str(value)
        checked = value in (True, "on", "true") if spec.type == "boolean" else False
        fields.append(
            Field(
                name=name,
                key=key,
                label=_label(name),
                input_type=_input_type(spec, editing=current is not None),
                required=spec.required,
                sensitive=spec.sensitive,
                description=spec.description,
                value=shown,
                checked=checked,
                pattern_hint=spec.pattern,
            )
        )
    return fields


def _typed(spec: CredentialField, raw: str | None, *, editing: bool = False) -> Any:
    """A form value as the API takes it (see the module's decisions); ``""`` is "nothing"."""
    if spec.type == "boolean":
        if spec.sensitive and editing:  # keep-or-set: "", "true" or "false"
            return {"true": True, "false": False}.get(raw or "", "")
        return raw is not None
    text = (raw or "").strip()
    if spec.type == "integer" and INTEGER.fullmatch(text):
        return int(text)
    return text


def create_body(
    provider: Provider,
    form: Mapping[str, Any],
    capabilities: Sequence[str],
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """``POST /api/v1/integrations``'s body from a configure form (``metadata``: what
    :func:`metadata_from` read from its rows)."""
    credentials: dict[str, Any] = {}
    for name, spec in provider.credential_schema.items():
        value = _typed(spec, form.get(field_key(name)))
        if value != "":
            credentials[name] = value
    return {
        "provider": provider.name,
        "credentials": credentials,
        "enabled_capabilities": list(capabilities),
        "metadata": dict(metadata),
    }


def update_body(
    provider: Provider,
    form: Mapping[str, Any],
    capabilities: Sequence[str],
    metadata: Mapping[str, Any],
    current: Integration,
) -> dict[str, Any]:
    """``PATCH /api/v1/integrations/{id}``'s body from an edit form of ``current``: only
    what changed (``metadata``: what :func:`metadata_from` read from its rows)."""
    credentials: dict[str, Any] = {}
    for name, spec in provider.credential_schema.items():
        key = field_key(name)
        if spec.sensitive:
            value = _typed(spec, form.get(key), editing=True)
            if value != "":  # a value typed replaces the stored one, even if "remove" is ticked
                credentials[name] = value
            elif not spec.required and form.get(f"clear-{name}") is not None:
                credentials[name] = None
            # else: blank keeps the stored value
            continue
        value = _typed(spec, form.get(key))
        if value == "" and not spec.required:
            value = None
        if value != current.credentials.get(name):
            credentials[name] = value
    body: dict[str, Any] = {}
    if credentials:
        body["credentials"] = credentials
    if set(capabilities) != set(current.enabled_capabilities):
        body["enabled_capabilities"] = list(capabilities)
    own = {k: v for k, v in current.metadata.items() if k != RESERVED_METADATA_KEY}
    if metadata != own:
        body["metadata"] = dict(metadata)
    return body


def metadata_rows(metadata: Mapping[str, Any] | None) -> list[MetadataRow]:
    """The metadata's rows for the form (relaykit's own ``verification`` key left out), and
    spare empty rows."""
    rows: list[MetadataRow] = []
    for key, value in (metadata or {}).items():
        if key == RESERVED_METADATA_KEY:
            continue
        # a text input keeps no line break: such a string is shown as JSON, so it comes
        # back as it was
        if isinstance(value, str) and "\n" not in value and "\r" not in value:
            rows.append(MetadataRow(len(rows), key, value, "text"))
        else:
            rows.append(MetadataRow(len(rows), key, json.dumps(value), "json"))
    for _ in range(SPARE_METADATA_ROWS):
        rows.append(MetadataRow(len(rows), "", "", "text"))
    return rows


def sent_metadata_rows(form: Mapping[str, Any]) -> list[MetadataRow]:
    """The rows as sent (a form shown again with its errors), each at its own index (the
    errors of :func:`metadata_from` name rows by it), then spare rows."""
    rows: list[MetadataRow] = []
    for index in range(_row_count(form)):
        key = str(form.get(f"meta-key-{index}") or "")
        value = str(form.get(f"meta-value-{index}") or "")
        kind = "json" if form.get(f"meta-kind-{index}") == "json" else "text"
        rows.append(MetadataRow(index, key, value, kind))
    while rows and not (rows[-1].key or rows[-1].value):
        rows.pop()  # trailing empty rows: the spare rows below replace them
    for _ in range(SPARE_METADATA_ROWS):
        rows.append(MetadataRow(len(rows), "", "", "text"))
    return rows


def _row_count(form: Mapping[str, Any]) -> int:
    try:
        count = int(str(form.get("meta-rows") or "0"))
    except ValueError:
        return 0
    return max(0, min(count, MAX_METADATA_ROWS))


def metadata_from(form: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The metadata object the rows make, and the problems of rows that make none (keyed
    ``meta-value-<i>`` / ``meta-key-<i>``, shown beside the row)."""
    metadata: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for index in range(_row_count(form)):
        key = str(form.get(f"meta-key-{index}") or "")
        raw = str(form.get(f"meta-value-{index}") or "")
        if not key.strip():
            if raw.strip():
                problems.setdefault(f"meta-key-{index}", []).append("A value needs a key.")
            continue
        if key in metadata:
            problems.setdefault(f"meta-key-{index}", []).append(f"The key {key} is given twice.")
            continue
        if key == RESERVED_METADATA_KEY:
            problems.setdefault(f"meta-key-{index}", []).append(
                f"The key {RESERVED_METADATA_KEY} is relaykit's own."
            )
            continue
        if form.get(f"meta-kind-{index}") == "json":
            try:
                metadata[key] = json.loads(raw)
            except ValueError:
                problems.setdefault(f"meta-value-{index}", []).append(
                    "This value was stored as JSON and must stay valid JSON."
                )
            continue
        metadata[key] = raw
    return metadata, problems


def field_errors(errors: Mapping[str, Sequence[str]], provider: Provider) -> dict[str, list[str]]:
    """The API's 422 ``errors`` keyed by the form's input ids (``credentials.secret_key`` →
    ``cred-secret_key``); what names no input stays under its own key."""
    keyed: dict[str, list[str]] = {}
    for path, messages in errors.items():
        name = path.removeprefix("credentials.")
        if path.startswith("credentials.") and name in provider.credential_schema:
            keyed.setdefault(field_key(name), []).extend(messages)
        else:
            keyed.setdefault(path, []).extend(messages)
    return keyed
