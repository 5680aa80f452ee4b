"""Test helper: a tiny, randomly initialised causal LM that loads through the production code path.

Nothing is downloaded: the tokenizer is a word-level ``tokenizers`` model
over a small fixed vocabulary (one token per space-separated word, so the
number of generated tokens is the number of words in the output), wrapped as
a ``PreTrainedTokenizerFast``; the model is a one-layer GPT-2 (about 25k
parameters). Neither has an end-of-sequence token, so generation always runs
for exactly ``max_new_tokens``.
"""

from __future__ import annotations

import os

TINY_LM_WORDS = (
    "<unk> <system> <user> <assistant> <end> system user assistant the a an and of in with is it for to "
    "linen cotton wool silk leather shirt dress coat shoe bag red blue navy green black white small large "
    "price size colour material range soft warm light classic new write describe product description "
    "under budget shop buy good fine nice"
).split()
#: A minimal chat template: "<role> content <end>" per message, then "<assistant>".
TINY_LM_CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} <end> {% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def make_tiny_causal_lm(
    directory: str | os.PathLike,
    seed: int = 0,
    chat_template: str | None = TINY_LM_CHAT_TEMPLATE,
    n_positions: int = 64,
) -> str:
    """Save a tiny random GPT-2 and its tokenizer into ``directory``; return the folder as a string.

    Pass the folder as ``TransformersGenerator(model=folder, device="cpu")``.
    ``chat_template=None`` saves a tokenizer without one (the plain-prompt path).
    The same ``seed`` always gives the same weights.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = os.fspath(directory)
    os.makedirs(folder, exist_ok=True)
    vocab = {word: index for index, word in enumerate(TINY_LM_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # No special tokens: every generated id decodes to exactly one word.
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    if chat_template:
        tokenizer.chat_template = chat_template
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=n_positions,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.generation_config.bos_token_id = None
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
