"""Interactive knobs that still read well when a notebook is executed headless.

``interact(f, beta=FloatSlider(...))`` is ``ipywidgets.interact`` in JupyterLab.
Executed headless (``python -m alignlab course``, nbval in the test suite, which
set ``ALIGNLAB_HEADLESS=1``), a widget's output would live only in widget state
that static viewers do not show; there, ``f`` is simply called once with each
control's default value, so the figure or text lands in the cell's output.
"""

from __future__ import annotations

import os

import ipywidgets


def headless() -> bool:
    """True when the notebook runs without a live front end (CI, ``course``)."""
    return os.environ.get("ALIGNLAB_HEADLESS", "") not in ("", "0")


def interact(f, **controls):
    """``ipywidgets.interact(f, **controls)`` live; ``f(**defaults)`` once when headless."""
    if headless():
        defaults = {k: (c.value if isinstance(c, ipywidgets.ValueWidget) else c)
                    for k, c in controls.items()}
        f(**defaults)
        return None
    return ipywidgets.interact(f, **controls)
