"""Studies beside the core: sweeps over seeds, the reward-KL frontier, the benchmark, over-optimisation.

* ``sweep``: resumable sweeps of ``python -m alignlab run`` (one result file per run) and the
  seed table (``python -m alignlab seeds``);
* ``frontier``: every method's arms on one gold-reward-vs-KL frontier (lecture 09);
* ``tuning``: the tuning protocol, each arm's configurations on tuning seeds (``python -m alignlab tune``);
* ``bench``: seconds per step against the floor (``python -m alignlab bench``);
* ``overopt``: proxy reward models, best-of-n from a pool and Gao et al.'s fits (lecture 08);
* ``docs``: every generated docs page, from the committed results and the code (``python -m alignlab docs``).
* ``verdicts``: comparative claims as paired differences over seeds with an interval (``results/verdicts.json``).

They read the method registry and the core; nothing in the core or in ``methods/`` imports them.
"""
