"""The ``Prefer`` request field (RFC 7240), as far as grenier uses it: ``wait=N`` and ``respond-async``."""

from __future__ import annotations

import math
from collections.abc import Iterable

from werkzeug.http import parse_list_header


def preferences(raw_values: Iterable[str]) -> dict[str, str | None]:
    """Preference name (lower-cased) to value; the first occurrence wins (§2); parameters are ignored."""
    found: dict[str, str | None] = {}
    for raw in raw_values:
        for item in parse_list_header(raw):
            token = item.split(";", 1)[0].strip()
            name, sep, value = token.partition("=")
            name = name.strip().lower()
            if name and name not in found:
                found[name] = value.strip().strip('"') if sep else None
    return found


def wait_seconds(raw_values: Iterable[str], default: float, cap: float) -> float:
    """How long to wait for a job: ``wait=N`` if given and valid, else ``default``; never over ``cap``.

    ``respond-async`` asks for the 202 at once (§4.1), whatever the default.
    """
    prefs = preferences(raw_values)
    if "respond-async" in prefs and "wait" not in prefs:
        return 0.0
    raw = prefs.get("wait")
    if raw is not None:
        try:
            wanted = float(raw)
        except ValueError:
            wanted = default
        else:
            if math.isnan(wanted) or wanted < 0:  # NaN or negative: ignore the preference
                wanted = default
    else:
        wanted = default
    return max(0.0, min(wanted, cap))


def wait_requested(raw_values: Iterable[str]) -> bool:
    """Did the client ask for a wait (``wait=N``, N a non-negative number)? Then a wait grenier honours is
    acknowledged with ``Preference-Applied: wait`` (§3)."""
    raw = preferences(raw_values).get("wait")
    if raw is None:
        return False
    try:
        wanted = float(raw)
    except ValueError:
        return False
    return not math.isnan(wanted) and wanted >= 0
