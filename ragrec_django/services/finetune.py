"""Fine-tune CLIP on the catalogue: read (image, text) pairs through the adapter and train.

Shared by the ``ragrec_finetune_clip`` command, ``tasks.finetune_clip_task`` and
the demo's ``prepare_demo --clip-only``. Training itself is
``ragrec_django.ml.finetune`` (imported on use: it is heavy and needs torch).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from ..adapters import get_adapter

TEXT_FIELDS = ("title", "text")


def read_pairs(text_field: str = "title", limit: int | None = None, adapter=None) -> tuple[list, dict[str, str]]:
    """(pairs, {item key: why it was skipped}) for every item of the adapter's queryset with an image and a text."""
    from ..ml.finetune import Pair

    if text_field not in TEXT_FIELDS:
        raise ValueError("text_field must be one of %s, got %r." % (", ".join(TEXT_FIELDS), text_field))
    adapter = adapter or get_adapter()
    pairs, skipped = [], {}
    queryset = adapter.get_queryset().order_by("pk")
    if limit:
        queryset = queryset[: int(limit)]
    for item in queryset.iterator(chunk_size=500):
        key = adapter.get_key(item)
        try:
            image = adapter.get_image_bytes(item)
        except (OSError, ValueError, ImproperlyConfigured) as exc:
            skipped[key] = "could not read the image: %s" % exc
            continue
        text = (adapter.get_title(item) if text_field == "title" else adapter.get_text(item)).strip()
        if not image:
            skipped[key] = "no image"
        elif not text:
            skipped[key] = "no text"
        else:
            pairs.append(Pair(key=key, image=bytes(image), text=text))
    return pairs, skipped


def finetune_from_adapter(
    out: str, *, text_field: str = "title", limit: int | None = None, on_progress=None, **options
):
    """Read pairs through the adapter and run ``train_clip``.

    ``options`` are ``FinetuneConfig`` fields; ``on_progress`` is ``train_clip``'s
    progress callback. Returns the ``FinetuneResult``; its report gains
    ``adapter_skipped`` (items without a usable image or text).
    """
    from ..ml.finetune import FinetuneConfig, train_clip

    config = FinetuneConfig.from_options(**options)
    pairs, skipped = read_pairs(text_field, limit)
    if not pairs:
        raise ValueError("No item has both an image and a %s; nothing to train on." % text_field)
    result = train_clip(pairs, out, config, on_progress=on_progress)
    result.report["adapter_skipped"] = len(skipped)
    result.report["text_field"] = text_field
    return result
