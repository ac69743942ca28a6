"""alignlab: a small, honest course on aligning language models to preferences.

A thin face: importing ``alignlab`` loads no model code (``python -m alignlab --help`` and
``notebooks --check`` need no torch). ``alignlab.report`` is the call every notebook ends with.
"""

__version__ = "0.1.0"

from .report import report

__all__ = ["report"]
