"""Print one closing line for the whole suite from the JUnit files every tox env writes:
``tests: N passed, N failed, N skipped`` (tox's own summary counts environments, not tests)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(folder: str) -> int:
    passed = failed = skipped = 0
    for path in sorted(Path(folder).glob("*.xml")):
        root = ET.parse(path).getroot()  # noqa: S314 (our own test reports)
        for suite in root.iter("testsuite"):
            total = int(suite.get("tests", 0))
            bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skip = int(suite.get("skipped", 0))
            passed += total - bad - skip
            failed += bad
            skipped += skip
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".tox/junit"))
