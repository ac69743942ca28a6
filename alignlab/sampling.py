"""Encoding, sampling and log-probabilities: one path for every method.

Sequences are ``<bos> prompt completion <eos>``, **left-padded** so that every
prompt ends in the same column and generation appends to all rows at once.
With left padding the position of a token is not its column, so every forward
pass gets ``position_ids = cumsum(attention_mask) - 1``; without that, a padded
row would see different positions (and different log-probs) than the same
sequence alone. ``completion_mask`` is 1 on completion tokens (including the
``<eos>``) and 0 on padding and prompt, and it is what every loss sums over.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GenerationConfig

from .timing import phase


@dataclass
class Batch:
    """A left-padded batch of prompt/completion sequences (tensors are (B, T))."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    """1 on completion tokens (the final ``<eos>`` included), 0 on prompt and padding."""
    prompts: list[str]
    completions: list[str]
    finished: list[bool]
    """True where the completion ended with ``<eos>`` (a truncated review is not)."""

    def to(self, device) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device),
                     self.completion_mask.to(device), self.prompts, self.completions,
                     self.finished)

    def __len__(self) -> int:
        return len(self.prompts)

    def take(self, rows) -> Batch:
        """The rows ``rows`` of the batch, in that order (tensors stay on their device)."""
        rows = [int(i) for i in rows]
        t = torch.tensor(rows, dtype=torch.long, device=self.input_ids.device)
        return Batch(self.input_ids[t], self.attention_mask[t], self.completion_mask[t],
                     [self.prompts[i] for i in rows], [self.completions[i] for i in rows],
                     [self.finished[i] for i in rows])

    def trim(self) -> Batch:
        """The batch without the columns that are padding in every row (left or right).

        With position ids from the attention mask, log-probs and rewards are unchanged.
        """
        keep = self.attention_mask.bool().any(0)
        if bool(keep.all()):
            return self
        cols = keep.nonzero().flatten()
        first, last = int(cols[0]), int(cols[-1]) + 1
        return Batch(self.input_ids[:, first:last], self.attention_mask[:, first:last],
                     self.completion_mask[:, first:last], self.prompts, self.completions,
                     self.finished)

    @staticmethod
    def concat(batches: list[Batch], pad_token_id: int) -> Batch:
        """Stack batches of different widths into one; narrower ones are padded on the right.

        Right padding after left-padded rows is harmless: it is masked out of attention,
        of every loss (``completion_mask`` 0) and of ``last_token_index``.
        """
        if not batches:
            raise ValueError("Batch.concat: got no batches")
        T = max(b.input_ids.shape[1] for b in batches)

        def pad(x, value):
            return F.pad(x, (0, T - x.shape[1]), value=value)

        return Batch(torch.cat([pad(b.input_ids, pad_token_id) for b in batches]),
                     torch.cat([pad(b.attention_mask, 0) for b in batches]),
                     torch.cat([pad(b.completion_mask, 0) for b in batches]),
                     [p for b in batches for p in b.prompts],
                     [c for b in batches for c in b.completions],
                     [f for b in batches for f in b.finished])


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) column of the last 1 in each row of ``mask`` (B, T), for left or right padding.

    ``mask`` is an attention mask (the last real token: where a reward model reads its
    score) or a completion mask (the last completion token: where a sequence-level
    reward lands). A row with no 1 is an error that names it.
    """
    m = mask.bool()
    if not m.any(-1).all():
        row = int((~m.any(-1)).nonzero()[0])
        raise ValueError(f"last_token_index: `mask` row {row} has no 1 (all 0). Likely cause: "
                         "the prompt mask was passed, or an empty completion was encoded "
                         "without <eos>, or a row has no real token at all.")
    T = m.shape[1]
    return T - 1 - m.flip(-1).long().argmax(-1)


def _words(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, tokenized in one batched call (no special tokens)."""
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []


def encode(tokenizer, prompts: list[str], completions: list[str], add_eos: bool = True,
           device=None) -> Batch:
    """Tokenize ``<bos> prompt completion [<eos>]`` rows into a left-padded ``Batch``."""
    if len(prompts) != len(completions):
        raise ValueError(f"encode: {len(prompts)} prompts but {len(completions)} completions")
    for name, texts in (("prompts", prompts), ("completions", completions)):
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise TypeError(f"encode: every item of {name} must be a str, got "
                            f"{type(bad[0]).__name__} ({bad[0]!r})")
    rows, comp_lens = [], []
    eos = [tokenizer.eos_token_id] if add_eos else []
    for p, c in zip(_words(tokenizer, prompts), _words(tokenizer, completions)):
        rows.append([tokenizer.bos_token_id] + p + c + eos)
        comp_lens.append(len(c) + len(eos))
    T = max(map(len, rows))
    pad = tokenizer.pad_token_id  # rows are built as lists: one tensor each, not one per row
    ids = torch.tensor([[pad] * (T - len(row)) + row for row in rows], dtype=torch.long)
    attn = torch.tensor([[0] * (T - len(row)) + [1] * len(row) for row in rows], dtype=torch.long)
    comp_mask = torch.tensor([[0] * (T - n) + [1] * n for n in comp_lens], dtype=torch.long)
    batch = Batch(ids, attn, comp_mask, list(prompts), list(completions), [add_eos] * len(rows))
    return batch.to(device) if device is not None else batch


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that ignore left padding: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """(B, T) log-prob of each token given the ones before it; column 0 is 0.

    ``temperature`` must be the one the tokens were sampled with, so that the
    log-probs belong to the distribution that produced them.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids(attention_mask)).logits[:, :-1]
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    lp = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return F.pad(lp, (1, 0))


def sequence_logprobs(model, batch: Batch, temperature: float = 1.0,
                      average: bool = False) -> torch.Tensor:
    """(B,) summed log pi(y|x) over each completion's tokens (its ``<eos>`` included).

    ``average=True`` divides by the completion's length (the mean token log-prob, the
    length-normalised variant lecture 04 shows as a pitfall of DPO).
    """
    lp = token_logprobs(model, batch.input_ids, batch.attention_mask, temperature)
    mask = batch.completion_mask.to(lp.dtype)
    total = (lp * mask).sum(-1)
    return total / mask.sum(-1) if average else total


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], max_new_tokens: int = 32,
           temperature: float = 1.0, seed: int | None = None) -> Batch:
    """Sample one completion per prompt (pure sampling: no top-k, no top-p).

    ``seed`` makes the draw repeatable without disturbing the global RNG. On the CPU a GPT-2
    samples with ``generate_unpadded`` (the same tokens as ``model.generate``, faster);
    elsewhere with ``model.generate``.
    """
    with phase("sampling"):  # where the time goes, inside ``timing.timing()``
        return _sample(model, tokenizer, prompts, max_new_tokens, temperature, seed)


def _sample(model, tokenizer, prompts, max_new_tokens, temperature, seed) -> Batch:
    device = next(model.parameters()).device
    enc = encode(tokenizer, prompts, [""] * len(prompts), add_eos=False, device=device)
    was_training = model.training
    model.eval()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        if device.type == "cpu" and getattr(model.config, "model_type", None) == "gpt2":
            new = generate_unpadded(model, enc.input_ids, enc.attention_mask, max_new_tokens,
                                    temperature, tokenizer.eos_token_id, tokenizer.pad_token_id)
        else:
            config = GenerationConfig(do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                      max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.eos_token_id,
                                      bos_token_id=tokenizer.bos_token_id)
            out = model.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                                 generation_config=config)
            new = out[:, enc.input_ids.shape[1]:]
    model.train(was_training)
    is_eos = new == tokenizer.eos_token_id
    # Completion tokens: everything up to and including the first <eos>.
    after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    comp_mask = (~after_eos).long()
    new = new.masked_fill(after_eos, tokenizer.pad_token_id)
    finished = is_eos.any(-1).tolist()
    eos = tokenizer.eos_token_id
    texts = tokenizer.batch_decode([[t for t in row[:n] if t != eos] for row, n in
                                    zip(new.tolist(), comp_mask.sum(-1).tolist())])
    return Batch(
        input_ids=torch.cat([enc.input_ids, new], 1),
        attention_mask=torch.cat([enc.attention_mask, comp_mask], 1),
        completion_mask=torch.cat([torch.zeros_like(enc.input_ids), comp_mask], 1),
        prompts=list(prompts), completions=texts, finished=finished,
    )


MIN_ROWS = 16
"""``generate_unpadded`` never computes fewer rows than this (or the whole batch, if smaller):
on the CPU a matrix product of 1-3 rows takes another kernel, whose last bits differ; from 4
rows on, each row's result does not depend on the others (16 leaves a margin)."""


@torch.no_grad()
def generate_unpadded(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      max_new_tokens: int, temperature: float, eos_token_id: int,
                      pad_token_id: int) -> torch.Tensor:
    """(B, n) new tokens: what ``model.generate(do_sample=True, top_k=0, top_p=1.0)`` appends to
    ``input_ids`` (B, P), token for token on the CPU, without computing the rows that finished.

    ``generate`` runs every row until the last one has emitted ``<eos>``, although a finished
    row only gets padding: on the course's batches (256 SFT samples of the quick profile) 57%
    of the rows it computes are finished ones. This loop makes the forward calls ``generate``
    makes (KV cache, positions from the attention mask, logits of the last token only), the
    same softmax and ONE ``torch.multinomial`` over all B rows per step (finished rows get a
    dummy distribution: ``multinomial`` draws the same random numbers for every row whatever
    its probabilities, so the other rows' tokens are unchanged), but once a quarter of the
    computed rows have finished it drops them from the batch and the KV cache (keeping at
    least ``MIN_ROWS``). Each row's numbers do not depend on the other rows, so the tokens
    are ``generate``'s, bit for bit: ``tests/test_bench.py`` checks it, and ``sample`` uses
    this loop only on the CPU (on a GPU, kernels may change with the batch size).
    """
    from transformers import DynamicCache

    B, device = input_ids.shape[0], input_ids.device
    if max_new_tokens < 1:
        return input_ids.new_zeros(B, 0)
    params = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    try:
        cache = DynamicCache(config=model.config)
    except TypeError:  # older transformers
        cache = DynamicCache()
    cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.2x
    mask = attention_mask.long()
    positions = mask.cumsum(-1) - 1
    positions.masked_fill_(mask == 0, 1)  # generate's positions (padding's never matter)
    step_ids = input_ids
    rows = torch.arange(B, device=device)  # the rows being computed, in order
    unfinished = torch.ones(B, dtype=torch.bool, device=device)
    probs = None
    new = []
    for _ in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=mask, position_ids=positions,
                       use_cache=True, **{cache_arg: cache}, **extra).logits
        scores = logits[:, -1].to(copy=True, dtype=torch.float32)
        if temperature != 1.0:  # generate's TemperatureLogitsWarper
            scores = scores / temperature
        p = F.softmax(scores, dim=-1)
        if len(rows) < B:
            if probs is None:
                probs = p.new_ones(B, p.shape[-1])  # any valid weights for finished rows
            probs[rows] = p
            p = probs
        tokens = torch.multinomial(p, num_samples=1).squeeze(1)
        tokens = torch.where(unfinished, tokens, torch.full_like(tokens, pad_token_id))
        new.append(tokens)
        unfinished &= tokens != eos_token_id
        if not bool(unfinished.any()):
            break
        alive = unfinished[rows]
        n_alive = int(alive.sum())
        if len(rows) > MIN_ROWS and n_alive <= 0.75 * len(rows):
            keep = alive.clone()
            short = MIN_ROWS - n_alive
            if short > 0:  # top up with finished rows: never a tiny matrix product
                keep[(~alive).nonzero().flatten()[:short]] = True
            keep = keep.nonzero().flatten()
            rows, mask = rows[keep], mask[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], 1)
        positions = mask.sum(-1, keepdim=True) - 1
        step_ids = tokens[rows, None]
    return torch.stack(new, 1)
