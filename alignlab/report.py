"""``report(...)``: the call every lecture notebook ends with (``python -m alignlab course`` reads it).

It prints one line ``ALIGNLAB_RESULT {json}`` of the notebook's headline numbers; the headless
course runner (``course.runner``) collects those lines into its results table.
"""

from __future__ import annotations

import json

MARKER = "ALIGNLAB_RESULT "
"""The prefix of the line ``report`` prints."""


def report(results, **extra) -> dict:
    """Print a notebook's headline numbers for ``python -m alignlab course`` to collect.

    ``results``: a ``training.History`` (its last shared metrics are used) or a dict.
    """
    row = results.final() if hasattr(results, "final") else dict(results)
    row.update(extra)
    row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
    print(MARKER + json.dumps(row))
    return row
