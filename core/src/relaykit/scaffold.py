"""``relaykit new-provider NAME``: a provider package whose tests pass as generated.

The templates (``scaffold_template/``) are a working provider for an example API: the
package layout, the entry point, a verifier, a ``send_sms`` handler, a webhook scheme, and
tests that subclass :class:`relaykit.testing.ProviderContractTests` and
:class:`relaykit.testing.WebhookContractTests`. The author replaces the example API with the
real one, test by test.
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from relaykit.errors import ValidationError
from relaykit.providers import SLUG_PATTERN


def write_provider_package(name: str, directory: Path, *, display_name: str | None = None) -> Path:
    """Write ``relaykit-<name>/`` under ``directory``; returns its path."""
    if not SLUG_PATTERN.match(name):
        raise ValidationError(
            {"name": ["Use lowercase letters, digits and underscores, starting with a letter."]}
        )
    dist = f"relaykit-{name.replace('_', '-')}"
    module = f"relaykit_{name}"
    target = directory / dist
    if target.exists():
        raise ValidationError({"name": [f"{target} already exists."]})
    values = {
        "name": name,
        "dist": dist,
        "module": module,
        "display_name": display_name or name.replace("_", " ").title(),
        "NAME_UPPER": name.upper(),
        # For the example webhook header (X-<header_name>-Signature): letters, digits, "-".
        "header_name": _header_token(display_name or name.replace("_", " ").title()) or "Provider",
    }
    root = files("relaykit") / "scaffold_template"
    for source, relative in _walk(root, Path()):
        destination = target / str(relative).replace("relaykit_PROVIDER", module).removesuffix(
            ".tmpl"
        )
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(Template(source.read_text()).substitute(values))
    return target


def _header_token(display_name: str) -> str:
    """``Acme SMS`` -> ``Acme-SMS``: a header name part that every proxy passes (no ``_``)."""
    return "-".join(re.findall(r"[A-Za-z0-9]+", display_name))


def _walk(node: Traversable, relative: Path) -> list[tuple[Traversable, Path]]:
    found: list[tuple[Traversable, Path]] = []
    for child in node.iterdir():
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            found.extend(_walk(child, relative / child.name))
        elif child.name.endswith(".tmpl"):
            found.append((child, relative / child.name))
    return found
