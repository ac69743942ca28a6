"""Settings as dataclasses, overridable from the command line or a notebook."""

from __future__ import annotations

import dataclasses
import typing

from .models import Profile, get_profile


def for_profile(cls, profile: Profile | str | None = None, full: dict | None = None, **overrides):
    """An instance of settings dataclass ``cls`` sized for ``profile``, then ``overrides``.

    ``profile``: a ``models.Profile``, a profile name, or None (``models.get_profile``
    picks one). The class's defaults are the ``quick`` (and ``micro``) sizes; ``full``
    replaces some of them on the ``full`` profile. A class with a ``max_new_tokens``
    field takes the profile's completion length. ``overrides`` go last, converted from
    strings by ``override`` (``--set steps=10``), unknown names rejected.
    """
    profile = get_profile(profile)
    sizes = {}
    if "max_new_tokens" in {f.name for f in dataclasses.fields(cls)}:
        sizes["max_new_tokens"] = profile.max_new_tokens
    if profile.name == "full":
        sizes.update(full or {})
    return override(cls(), {**sizes, **overrides})


def override(config, overrides: dict):
    """A copy of dataclass ``config`` with fields replaced from ``overrides``.

    Values may be strings (from ``--set beta=0.05``); they are converted to the
    field's type. Unknown names get an error that lists the valid ones.
    """
    fields = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    changes = {}
    for name, value in overrides.items():
        if name not in fields:
            raise ValueError(f"{type(config).__name__} has no setting {name!r}; "
                             f"valid settings: {sorted(fields)}")
        kind = hints[name]
        if isinstance(value, str) and kind is not str:
            try:
                if kind is bool:
                    if value.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(value)
                    value = value.lower() in ("true", "1")
                else:
                    value = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"setting {name!r} expects {getattr(kind, '__name__', kind)}, "
                                 f"got {value!r}") from None
        changes[name] = value
    return dataclasses.replace(config, **changes)
