"""The methods, on top of the shared core, and the registry the CLI, tests and sweep read.

Each method is one module that ends with ``METHOD = registry.Method(...)``:

* ``rl``: the policy with a value head, per-token rewards, rollouts (shared by pg and ppo);
* ``rm``: the Bradley-Terry reward model;  ``bon``: best-of-N under it;
* ``pg``: REINFORCE, baselines and GAE;  ``ppo``: PPO-clip RLHF;
* ``dpo``: direct preference optimisation;  ``kto``: Kahneman-Tversky optimisation;
* ``online``: online DPO, BPO and VPO (pairs sampled from the policy as it trains).

A new method lands as one module here plus one entry in ``REGISTRY`` below.
"""

from __future__ import annotations

from .. import pipeline
from ..registry import Method
from . import bon, dpo, grpo, kto, online, pg, ppo, rm

REGISTRY: dict[str, Method] = {m.name: m for m in (
    pipeline.METHOD,
    rm.METHOD,
    bon.METHOD,
    pg.METHOD,
    ppo.METHOD,
    dpo.METHOD,
    kto.METHOD,
    online.METHOD,
    online.BPO_METHOD,
    online.VPO_METHOD,
    grpo.RLOO_METHOD,
    grpo.GRPO_METHOD,
)}
"""Every method of the course by name, in lecture order."""
