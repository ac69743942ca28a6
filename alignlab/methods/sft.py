"""SFT as a registered method: the reference policy of the course, evaluated against itself.

The training itself is the core's (``pipeline.pretrain`` then ``pipeline.finetune``, lecture 00),
cached by ``pipeline.load_sft``; ``run sft`` trains or loads it and reports the shared evaluation
of the SFT model against itself (KL 0, win-rate 1/2 within sampling error).
"""

from __future__ import annotations

from ..registry import TRAINED_KEYS, Method, prepare


def run(profile, seed: int = 0, config=None) -> dict:
    """CLI entry (``python -m alignlab run sft``): train or load the SFT model, evaluate it."""
    r = prepare(profile, seed)
    return {k: round(v, 4) for k, v in r.evaluator(r.ref).items()}


METHOD = Method(
    name="sft", description="pretrain + supervised fine-tune the tiny GPT-2 (the reference policy)",
    config=None, run=run, trainer="pipeline.finetune", lecture="00_pipeline", metrics=TRAINED_KEYS,
    extra_keys=("length", "perplexity"))
