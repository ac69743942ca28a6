"""A word-level tokenizer for the review world, trained with ``tokenizers``.

The world's text is lower-case words separated by spaces (punctuation is a
word too), so a word-level model is exact: ``decode(encode(text)) == text``.
It is wrapped as a ``transformers.PreTrainedTokenizerFast`` with distinct
``<pad>``, ``<bos>`` and ``<eos>`` tokens and left padding, the side a
decoder-only model needs for batched generation.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

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
