"""The docs stay true to the code: every snippet of the provider guide is taken from code
the tests run, and every hook is documented with an example and exercised by a test."""

from __future__ import annotations

import re

from relaykit.hookspecs import RelaykitSpecs

from .conftest import REPO

GUIDE = REPO / "docs" / "writing-a-provider.md"
TEMPLATES = REPO / "core" / "src" / "relaykit" / "scaffold_template"
KIT = REPO / "core" / "src" / "relaykit" / "testing"


def rendered_scaffold() -> str:
    values = {
        "$name": "acme_sms",
        "${name}": "acme_sms",
        "$dist": "relaykit-acme-sms",
        "$module": "relaykit_acme_sms",
        "$display_name": "Acme Sms",
        "$$": "$",
    }
    texts = []
    for path in TEMPLATES.rglob("*.tmpl"):
        text = path.read_text()
        for key, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(key, value)
        texts.append(text)
    return "\n".join(texts)


def test_every_snippet_of_the_provider_guide_is_tested_code() -> None:
    sources = rendered_scaffold() + "\n".join(p.read_text() for p in KIT.glob("*.py"))
    blocks = re.findall(r"```(python|toml)\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) >= 6
    for _, block in blocks:
        assert block.strip() in sources, f"not in the scaffold or the kit:\n{block}"


def test_every_hook_is_documented_with_an_example_and_tested() -> None:
    tests = "\n".join(p.read_text() for p in (REPO).glob("*/tests/*.py"))
    tests += "\n".join(p.read_text() for p in (REPO / "tests").glob("*.py"))
    tests += "\n".join(p.read_text() for p in (REPO / "plugins").glob("*/src/*/*.py"))
    for name in dir(RelaykitSpecs):
        if not name.startswith("relaykit_"):
            continue
        doc = getattr(RelaykitSpecs, name).__doc__ or ""
        assert "Example:" in doc, f"{name} has no example"
        assert f"def {name}(" in tests, f"no test implements {name}"
