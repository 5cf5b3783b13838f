"""Query parameters every list shares, declared once for the handlers and the document.

The bounds are documented, not enforced here: the services check them and say so in the
contract's words (``The page must be between 1 and …``); Litestar only parses the integer.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

from relaykit.pagination import MAX_PAGE, MAX_PER_PAGE

Page = Annotated[
    int | None,
    Parameter(
        description=f"The page, from 1 (at most {MAX_PAGE}); default 1.",
        schema_extra={"minimum": 1, "maximum": MAX_PAGE},
    ),
]
PerPage = Annotated[
    int | None,
    Parameter(
        description=f"Rows per page, 1 to {MAX_PER_PAGE}; default 25.",
        schema_extra={"minimum": 1, "maximum": MAX_PER_PAGE},
    ),
]
