"""One dashboard for every method: gold reward, KL and win-rate over training."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .evaluation import KL_ESTIMATOR
from .metrics import SHARED

TITLES = {
    "gold_reward": "gold reward (mean, held-out prompts)",
    "kl": f"KL(π ‖ π_ref) per sequence\n[{KL_ESTIMATOR}]",
    "win_rate": "win-rate vs π_ref (gold judge, ties ½)",
    "valid_rate": "valid-review rate",
}
"""Panel titles of the shared metrics (defined in ``alignlab.metrics``)."""
PANELS = [(key, TITLES[key]) for key in SHARED]


def dashboard(*histories, title: str | None = None, extra: tuple[str, ...] = (),
              x_label: str = "step", figsize_per_panel: float = 3.4, kl_label: str | None = None,
              colors: dict | None = None):
    """Plot the shared metrics (and any ``extra`` ones) of one or more runs side by side.

    ``histories``: ``training.History`` objects; each becomes one line per panel,
    labelled with its name. ``kl_label`` replaces the KL panel's title when the KL
    is not the sampled k1 estimate (e.g. best-of-N's analytic KL). ``colors``: run name ->
    colour; runs that share a name (one method over several seeds) then share a colour
    and one legend entry. Returns the figure.
    """
    panels = [(k, kl_label if k == "kl" and kl_label else label) for k, label in PANELS]
    panels += [(k, k) for k in extra]
    fig, axes = plt.subplots(1, len(panels), figsize=(figsize_per_panel * len(panels), 3.2))
    for ax, (key, label) in zip(axes, panels):
        for h in histories:
            steps, values = h.series(key)
            if steps:
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3,
                        label=h.name, color=(colors or {}).get(h.name))
        if key == "win_rate":
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        if key == "kl":
            ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    if len(histories) > 1 or histories and histories[0].name:
        handles = dict(zip(*reversed(axes[0].get_legend_handles_labels())))  # one entry per name
        axes[0].legend(handles.values(), handles.keys(), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
