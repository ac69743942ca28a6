"""alignlab: a small, honest course on aligning language models to preferences."""

__version__ = "0.1.0"

from transformers.utils import logging as _hf_logging

# The course loads and saves tiny local models many times: keep the output to what teaches.
_hf_logging.set_verbosity_error()
_hf_logging.disable_progress_bar()

from .course.runner import report  # noqa: E402  (the one call every notebook ends with)

__all__ = ["report"]
