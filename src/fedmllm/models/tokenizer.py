"""A word-level tokeniser built locally, and a decoder that gives numbers and boxes back.

The tiny model cannot download a tokeniser, and a word-level vocabulary over the benchmark's
closed word list keeps the embedding table small. Text is lower-cased and split at whitespace,
at every punctuation mark and between digits, so ``0.12`` is the four tokens ``0 . 1 2`` and
any number is spelled with ten digit tokens.

Decoding is deterministic: ``tokenizer.decode`` joins tokens with single spaces; ``decode_text``
then re-attaches what the splitting took apart (see its docstring) so that generated box text
parses and lower-case sentences come back with their original spacing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<s>", "</s>", "<image>"
# The special tokens in id order (0-4), keyed by the role transformers' tokenisers give them.
SPECIAL_ROLES = {
    "pad_token": PAD,
    "unk_token": UNK,
    "bos_token": BOS,
    "eos_token": EOS,
    "image_token": IMAGE,
}
SPECIAL_TOKENS = tuple(SPECIAL_ROLES.values())

# Always in the vocabulary, whatever the texts: every number and box must be spellable.
_BASE_SYMBOLS = tuple("0123456789") + tuple(".,[]?:;!()-/'%")

# Tokens glued to the previous token, to the next one, or to both (as the metrics' tokeniser
# keeps "ground-glass" and "don't" whole).
_ATTACH_LEFT = frozenset(",.?!:;)]}%")
_ATTACH_RIGHT = frozenset("([{")
_JOIN_BOTH = frozenset("'-/")


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )


def _split(text: str) -> list[str]:
    """The tokens of ``text`` under our normaliser and pre-tokeniser, special tokens removed."""
    for special in SPECIAL_TOKENS:
        text = text.replace(special, " ")
    pre = _pre_tokenizer()
    return [piece for piece, _ in pre.pre_tokenize_str(text.lower())]


def build_word_tokenizer(
    words: Sequence[str], texts: Iterable[str] = ()
) -> PreTrainedTokenizerFast:
    """Build a word-level tokeniser over a closed vocabulary.

    Token ids are deterministic: the special tokens ``<pad> <unk> <s> </s> <image>`` (ids 0-4),
    then the digits and common punctuation, then ``words`` in order, then every new token
    found in ``texts`` in order of first appearance.

    Args:
        words: The benchmark's vocabulary (lower-case words, punctuation, digits); each entry is
            itself split, so a multi-token entry contributes its pieces.
        texts: Extra texts whose tokens must be known (questions, answers, the prompt template).

    Returns:
        A ``PreTrainedTokenizerFast`` that prepends ``<s>`` when ``add_special_tokens`` is true
        (as LLaMA's tokeniser does), with pad/unk/bos/eos set and ``image_token = "<image>"``.
    """
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for source in (_BASE_SYMBOLS, words, texts):
        for text in source:
            for piece in _split(text):
                vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = _pre_tokenizer()
    # Special tokens are matched before normalisation, so "<image>" is never split at "<".
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL_TOKENS])
    bos_id = vocab[BOS]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="right", **SPECIAL_ROLES)


def is_word_tokenizer(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether ``tokenizer`` is a word-level tokeniser such as ``build_word_tokenizer``'s."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and isinstance(backend.model, models.WordLevel)


def _glue(tokens: Sequence[str]) -> str:
    """Join word-level tokens, re-attaching punctuation and digits (see ``decode_text``)."""
    out: list[str] = []
    glue_next = False
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i > 0 else ""
        prev2 = tokens[i - 2] if i > 1 else ""
        in_number = tok.isdigit() and (prev.isdigit() or (prev == "." and prev2.isdigit()))
        attach = glue_next or tok in _ATTACH_LEFT or tok in _JOIN_BOTH or in_number
        if out and not attach:
            out.append(" ")
        out.append(tok)
        glue_next = tok in _ATTACH_RIGHT or tok in _JOIN_BOTH
    return "".join(out)


def decode_text(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int] | torch.Tensor) -> str:
    """Decode generated ids into text a metric can parse.

    Decoding stops at the first eos. For a word-level tokeniser the rules are, deterministically:
    special tokens other than ``<unk>`` are dropped; adjacent digits join into one number and
    ``digit . digit`` into a decimal (``0 . 1 2`` -> ``0.12``); ``, . ? ! : ; ) ] } %`` attach to
    the previous token, ``( [ {`` to the next one, and ``' - /`` to both; every other pair of
    tokens is separated by one space. So ``[0.12, 0.34, 0.56, 0.78]`` and lower-case sentences
    such as ``a 12 mm lesion in the left lobe.`` round-trip exactly. Two numbers written
    side by side (``3 4``) come back as one (``34``): our templates never do that.

    For any other tokeniser this is ``tokenizer.decode(ids, skip_special_tokens=True).strip()``.

    Args:
        tokenizer: The tokeniser that produced ``ids``.
        ids: Token ids of one sequence (generated part only).

    Returns:
        The decoded text.
    """
    id_list = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    eos_id = tokenizer.eos_token_id
    if eos_id is not None and eos_id in id_list:
        id_list = id_list[: id_list.index(eos_id)]
    if not is_word_tokenizer(tokenizer):
        return tokenizer.decode(id_list, skip_special_tokens=True).strip()
    drop = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    tokens = tokenizer.convert_ids_to_tokens([i for i in id_list if i not in drop])
    return _glue(tokens)
