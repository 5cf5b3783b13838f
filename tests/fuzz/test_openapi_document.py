"""The document the live server serves at /schema/openapi.json is valid OpenAPI 3.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema_path import SchemaPath
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing.exceptions import Unresolvable

from ..conftest import Server

MIN_OPERATIONS = 15
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def served_document(server: Server) -> dict[str, Any]:
    with server.client() as client:
        response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    assert "json" in response.headers["content-type"]  # application/vnd.oai.openapi+json
    document: dict[str, Any] = response.json()
    return document


def test_the_served_document_is_valid_openapi_3_1(server: Server) -> None:
    document = served_document(server)
    assert str(document.get("openapi", "")).startswith("3.1."), document.get("openapi")
    operations = [
        f"{method.upper()} {path}"
        for path, item in (document.get("paths") or {}).items()
        for method in item
        if method in METHODS
    ]
    assert len(operations) >= MIN_OPERATIONS, f"only {len(operations)} operations: {operations}"

    # Every error, not just the first, so one run lists all there is to fix. The validator
    # stops at the first $ref it cannot resolve: those are listed beforehand, all of them.
    errors = [
        f"{where}: $ref {ref} points to nothing"
        for where, ref in local_refs(document)
        if not resolves(document, ref)
    ]
    validator = OpenAPIV31SpecValidator(SchemaPath.from_dict(document))
    try:
        errors += [
            f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator.iter_errors()
        ]
    except Unresolvable as exc:
        errors.append(f"validation stopped: unresolvable $ref {getattr(exc, 'ref', '?')}")
    assert not errors, f"{len(errors)} OpenAPI 3.1 error(s):\n" + "\n".join(errors)
    validate(document, cls=OpenAPIV31SpecValidator)  # the library's own verdict, as 3.1


def local_refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            yield where, ref
        for key, value in node.items():
            escaped = str(key).replace("~", "~0").replace("/", "~1")
            yield from local_refs(value, f"{where}/{escaped}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from local_refs(value, f"{where}/{index}")


def resolves(document: dict[str, Any], ref: str) -> bool:
    node: Any = document
    for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True
