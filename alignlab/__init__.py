"""alignlab: a small, honest course on aligning language models to preferences."""

__version__ = "0.1.0"
