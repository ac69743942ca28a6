"""A word-level tokenizer for the review world, trained with ``tokenizers``.

The world's text is lower-case words separated by spaces (punctuation is a
word too), so a word-level model is exact: ``decode(encode(text)) == text``.
It is wrapped as a ``transformers.PreTrainedTokenizerFast`` with distinct
``<pad>``, ``<bos>`` and ``<eos>`` tokens and left padding, the side a
decoder-only model needs for batched generation.

**Any tokenizer, one contract** (for a base model of your own: ``models.BASE_MODEL_ENV``).
The course tokenizes a prompt and its completion separately and puts their ids side by
side, so ``adapt_tokenizer`` makes a model's own tokenizer keep what the word-level one
does: a bos, an eos and a pad id (missing ones become the eos, as in GPT-2; a tokenizer
with no eos gains ``<eos>``), left padding, and on the review world's text
``decode(ids(completion)) == completion`` and ``decode(ids(prompt) + ids(completion)) ==
prompt + " " + completion``. A byte-level BPE (GPT-2's kind) breaks the second one ("the
movie" + "was" decodes as "the moviewas"), so it gets a prefix space per piece and a
decoder that drops the first space. A tokenizer that still breaks the contract is an error.
"""

from __future__ import annotations

import json
import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]


def train_tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
    """Train a word-level tokenizer on ``corpus`` and wrap it for ``transformers``."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
        padding_side="left", model_max_length=128,
    )


def load_tokenizer(folder) -> PreTrainedTokenizerFast:
    """The tokenizer saved in a model ``folder``, adapted to the course (``adapt_tokenizer``).

    Read with ``AutoTokenizer`` and nothing downloaded; a folder without one is a ``ValueError``.
    """
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        raise ValueError(f"the tokenizer in {str(folder)!r} cannot be loaded by AutoTokenizer "
                         f"({' '.join(str(e).split())[:300]})") from None
    if len(tok) == 0 or getattr(tok, "backend_tokenizer", None) is None:
        raise ValueError(f"the folder {str(folder)!r} has no usable tokenizer (AutoTokenizer found "
                         "an empty or slow-only one); save a fast tokenizer (tokenizer.json) beside "
                         "the model with tokenizer.save_pretrained(folder)")
    return adapt_tokenizer(tok)


def _contract_breach(tok, pairs: list[tuple[str, str]]) -> str | None:
    """None if ``tok`` keeps the contract on every (prompt, completion) of ``pairs``, else why not."""
    for prompt, completion in pairs:
        p, c = (tok(t, add_special_tokens=False)["input_ids"] for t in (prompt, completion))
        for ids, want in ((c, completion), (p + c, f"{prompt} {completion}")):
            got = tok.decode(ids)
            if got != want:
                return f"its ids of {want!r} decode as {got!r}"
    return None


def _with_prefix_space(backend: Tokenizer) -> Tokenizer | None:
    """A copy of a byte-level ``backend`` that encodes every piece as if a space came before it,
    and whose decoder drops the first space; None if ``backend`` is not byte-level."""
    spec = json.loads(backend.to_str())
    found = False

    def visit(node):
        nonlocal found
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel" and "add_prefix_space" in node:
                node["add_prefix_space"], found = True, True
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(spec.get("pre_tokenizer"))
    if not found or spec.get("decoder") is None:
        return None
    spec["decoder"] = {"type": "Sequence", "decoders": [
        spec["decoder"], {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    return Tokenizer.from_str(json.dumps(spec))


def adapt_tokenizer(tok, examples: int = 64) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` of the same vocabulary that keeps the course's contract.

    ``tok``: a fast ``transformers`` tokenizer (a model's own). Checked on ``examples``
    (prompt, completion) splits of grammar reviews; a ``ValueError`` says which text fails.
    """
    from . import world

    rng = random.Random("tokenizer-contract")
    pairs = [world.split_review(world.sample_review(rng)) for _ in range(examples)]
    pairs.append(("i thought the plot", " ".join(world.vocabulary())))
    eos = tok.eos_token or EOS  # the constructor adds <eos> if the vocabulary lacks it

    def wrap(backend: Tokenizer) -> PreTrainedTokenizerFast:
        backend = Tokenizer.from_str(backend.to_str())
        backend.no_padding()
        backend.no_truncation()
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, eos_token=eos, bos_token=tok.bos_token or eos,
            pad_token=tok.pad_token or eos, unk_token=tok.unk_token, padding_side="left",
            clean_up_tokenization_spaces=False, model_max_length=tok.model_max_length)

    out = wrap(tok.backend_tokenizer)
    why = _contract_breach(out, pairs)
    if why is not None:
        patched = _with_prefix_space(tok.backend_tokenizer)
        if patched is not None:
            out, first = wrap(patched), why
            why = _contract_breach(out, pairs)
            why = why and f"{first} (and with a prefix space, {why})"
    if why is not None:
        raise ValueError(f"the tokenizer cannot write the review world's text: {why}. The course "
                         "tokenizes prompt and completion separately and needs decode(ids(prompt) + "
                         "ids(completion)) == prompt + ' ' + completion (see alignlab.tokenizer)")
    return out
