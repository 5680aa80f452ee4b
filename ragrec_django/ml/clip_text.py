"""CLIP text tower without the padding: the same vectors for a fraction of the work on short texts.

open_clip pads every text to the context length (77 tokens) and runs the whole
sequence. CLIP's text transformer is causal and pools at the end-of-text
token, so positions after the longest text of a batch never change the
result; a five-word search query then costs ~8 positions instead of 77, which
is what makes CPU query encoding in the web process affordable.
"""

from __future__ import annotations

from .lazy import LazyModule

torch = LazyModule("torch")

#: open_clip's SimpleTokenizer pads with token id 0.
PAD_ID = 0


def can_trim(model) -> bool:
    """Whether ``model`` is an open_clip ``CLIP`` whose text tower is causal and pools at end-of-text."""
    try:
        from open_clip.model import CLIP
    except ImportError:  # pragma: no cover - open_clip is a dependency of the CLIP encoders
        return False
    return (
        type(model) is CLIP
        and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", None) in ("argmax", "eos")
    )


def used_length(tokens) -> int:
    """Positions up to the last non-padding token of the longest row (at least 1)."""
    used = (tokens != PAD_ID).int()
    positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    return max(int((used * positions).max()), 1)


def encode_text(model, tokens):
    """``model.encode_text(tokens)``, computed on the tokens cut to their used length when that is exact."""
    if not can_trim(model):
        return model.encode_text(tokens)
    from open_clip.transformer import text_global_pool

    length = used_length(tokens)
    if length == tokens.shape[1]:
        return model.encode_text(tokens)
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = (
            model.text_projection(x)
            if isinstance(model.text_projection, torch.nn.Linear)
            else x @ model.text_projection
        )
    return x
