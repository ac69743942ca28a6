"""The methods, on top of the shared core, and the registry the CLI, the studies and the tests read.

Each method is one module that ends with ``METHOD = registry.Method(...)``, its one declaration
(settings, run, logged and reported metrics, frontier arms, cost model):

* ``sft``: the reference policy (trained by ``pipeline``);  ``rm``: the Bradley-Terry reward model;
* ``bon``: best-of-N under the reward model, and best-of-n estimators from one pool;
* ``rl``: the policy with a value head and rollouts (shared by pg and ppo);
* ``pg``: REINFORCE, baselines and GAE;  ``ppo``: PPO-clip RLHF;
* ``dpo``: direct preference optimisation;  ``kto``: Kahneman-Tversky optimisation (and offline PPO);
* ``online``: online DPO, BPO and VPO (pairs sampled from the policy as it trains);
* ``grpo``: RLOO and GRPO (k samples per prompt, no critic).

A new method lands as one module here plus one line in ``REGISTRY`` below.
"""

from __future__ import annotations

from ..registry import Method
from . import bon, dpo, grpo, kto, online, pg, ppo, rm, sft

REGISTRY: dict[str, Method] = {m.name: m for m in (
    sft.METHOD,
    rm.METHOD,
    bon.METHOD,
    pg.METHOD,
    ppo.METHOD,
    dpo.METHOD,
    kto.METHOD,
    kto.OFFLINE_PPO_METHOD,
    online.METHOD,
    online.BPO_METHOD,
    online.VPO_METHOD,
    grpo.RLOO_METHOD,
    grpo.GRPO_METHOD,
)}
"""Every method of the course by name, in lecture order."""
