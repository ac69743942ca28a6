"""What a method declares about itself, once: the ``Method`` record.

Each method module ends with one ``METHOD = Method(...)``; ``alignlab.methods.REGISTRY``
collects them, and the CLI (``run`` choices, ``run METHOD --help``), the tests and the
sweep read that registry. Adding a method means: one module, one entry in
``alignlab.methods.REGISTRY``, its tests, its row in the docs.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from .metrics import SHARED

SHARED_KEYS = ("method", "profile", "seed", "seconds", *SHARED)
"""Keys of every ``python -m alignlab run`` JSON line (the README promises them)."""


@dataclass(frozen=True)
class Method:
    """One trainable (or sampling) method of the course, as the CLI and the sweep see it."""

    name: str
    """The name on the command line: ``python -m alignlab run NAME``."""
    description: str
    """One line for ``--help``."""
    config: type | None
    """The settings dataclass that ``--set KEY=VALUE`` overrides (None: no settings)."""
    run: Callable[..., dict]
    """``run(profile, seed, overrides) -> dict`` of the shared metrics plus ``extra_keys``."""
    metrics: tuple[str, ...] = ()
    """The keys it logs during training (each defined once in ``alignlab.metrics``)."""
    extra_keys: tuple[str, ...] = ()
    """Keys its JSON line adds to ``SHARED_KEYS``."""
    lecture: str = ""
    """The lecture notebook that teaches it."""
    smoke: dict = dataclasses.field(default_factory=dict)
    """Settings that make a run on the ``micro`` profile take seconds (tests, smoke checks)."""

    def settings(self, profile=None) -> list[tuple[str, str, object, str]]:
        """(name, type, default for ``profile``, one-line doc) of each setting."""
        if self.config is None:
            return []
        defaults = self.config.for_profile(profile) if profile is not None and \
            hasattr(self.config, "for_profile") else self.config()
        docs = field_docs(self.config)
        return [(f.name, getattr(f.type, "__name__", str(f.type)), getattr(defaults, f.name),
                 docs.get(f.name, "")) for f in dataclasses.fields(self.config)]


def field_docs(cls) -> dict[str, str]:
    """The docstring written under each field of dataclass ``cls`` (first line), by name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for prev, node in zip(body, body[1:]):
            if isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and \
                    isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and \
                    isinstance(node.value.value, str):
                docs[prev.target.id] = " ".join(node.value.value.split())
    return docs
