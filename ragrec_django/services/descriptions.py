"""RAG product descriptions: generate grounded drafts, review them, publish with an audit trail.

Nothing is ever published automatically: ``publish`` needs an approval record
and is called by a person with the publish permission (the admin enforces
it). Every step is recorded in ``DescriptionEvent``; every published text is
kept in ``PublishedDescription`` so any earlier one can be restored. Publishing
and rolling back send ``signals.description_published`` / ``description_rolled_back``
after commit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import registry, signals, storage
from ..adapters import get_adapter
from ..conf import ragrec_settings
from ..exceptions import ReviewError
from ..generation.checks import check_draft, colour_words, type_words
from ..generation.prompt import PROMPT_VERSION, build_description_request
from ..generation.sanitise import (
    html_to_text,
    sanitise_output,
    split_citations,
    strip_citations,
)
from ..models import (
    DescriptionDraft,
    DescriptionEvent,
    GenerationJob,
    Item,
    PublishedDescription,
)

logger = logging.getLogger(__name__)
Status = DescriptionDraft.Status
Action = DescriptionEvent.Action


def publishable(html: str) -> str:
    """The text that is published: sanitised output without citation markers, as plain text."""
    return html_to_text(strip_citations(html))


# ---------------------------------------------------------------- grounding


def product_facts(host_item) -> dict:
    """The product's own fields, as the adapter reads them (the only facts a draft may state)."""
    adapter = get_adapter()
    snapshot = adapter.snapshot(host_item)
    facts = {"id": snapshot.key, "title": snapshot.title, "category": snapshot.category}
    if snapshot.price is not None:
        facts["price"] = str(snapshot.price)
    facts.update({name: str(value) for name, value in adapter.get_attributes(host_item).items()})
    description = adapter.get_description(host_item)
    if description:
        facts["description"] = description
    return facts


def retrieved_sources(item: Item, *, limit: int = 3) -> list[dict]:
    """The most similar products that have a published description: their text and attributes."""
    if not _text_space_ready():
        return []
    vector = storage.vectors_for_items("text", [item.id]).get(item.id)
    described = frozenset(
        PublishedDescription.objects.filter(is_current=True).exclude(item=item).values_list("item_id", flat=True)
    )
    if vector is None or not described:
        return []
    found = storage.nearest("text", vector, limit, filters=storage.ItemFilter(only_ids=described))
    items = Item.objects.in_bulk([n.item_id for n in found])
    texts = dict(PublishedDescription.objects.filter(is_current=True, item_id__in=items).values_list("item_id", "text"))
    return [
        {
            "id": items[n.item_id].key,
            "title": items[n.item_id].title,
            "text": texts[n.item_id],
            "fields": {"category": items[n.item_id].category, **items[n.item_id].metadata},
        }
        for n in found
    ]


def _text_space_ready() -> bool:
    return "text" in registry.get_spaces() and storage.active_generation("text") is not None


def style_examples(category: str, *, limit: int | None = None) -> list[dict]:
    """Reviewers' edits of approved drafts, newest first (same category preferred): few-shot examples."""
    limit = ragrec_settings.STYLE_EXAMPLES if limit is None else limit
    edited = DescriptionDraft.objects.filter(status__in=[Status.APPROVED, Status.PUBLISHED]).exclude(reviewed_at=None)
    examples = []
    for draft in edited.order_by("-reviewed_at")[: limit * 10]:
        before = publishable(draft.generated_text)
        if before.strip() != draft.text.strip():
            examples.append(({"before": before, "after": draft.text}, draft.item.category == category))
    examples.sort(key=lambda pair: not pair[1])
    return [example for example, _ in examples[:limit]]


# ---------------------------------------------------------------- generation


def generate_draft(
    item_key: str,
    *,
    generator: str | None = None,
    user=None,
    job: GenerationJob | None = None,
    replaces: DescriptionDraft | None = None,
) -> DescriptionDraft:
    """Generate, sanitise and check a draft for one item; it waits for review."""
    from .encoding import sync_host_items

    host_item = sync_host_items([item_key]).get(str(item_key))
    if host_item is None:
        raise Item.DoesNotExist("No item with id %r." % str(item_key))
    item = Item.objects.get(key=str(item_key))
    alias = generator or ragrec_settings.DESCRIPTION_GENERATOR
    backend = registry.get_generator(alias)
    facts = product_facts(host_item)
    sources = retrieved_sources(item)
    request = build_description_request(
        facts, sources, style_examples(item.category), allow_links=ragrec_settings.DESCRIPTION_ALLOW_LINKS
    )
    raw = backend.generate(request)
    clean = sanitise_output(
        raw, allow_links=ragrec_settings.DESCRIPTION_ALLOW_LINKS, max_chars=ragrec_settings.DESCRIPTION_MAX_CHARS
    )
    flags = [
        dataclasses.asdict(flag)
        for flag in check_draft(clean.html, request.facts, request.sources, banned_claims=ragrec_settings.BANNED_CLAIMS)
    ]
    flags += _image_flags(item, clean.html)
    flags += [
        {"kind": "removed_content", "message": "removed from the output: %s" % removed, "span": removed}
        for removed in clean.removed
    ]
    with transaction.atomic():
        draft = DescriptionDraft.objects.create(
            item=item,
            current_text=facts.get("description", ""),
            generated_text=clean.html,
            text=publishable(clean.html),
            citations=[dataclasses.asdict(sentence) for sentence in split_citations(clean.html)],
            sources=[{"kind": "product", "fields": request.facts}]
            + [{"kind": "retrieved", **s} for s in request.sources],
            flags=flags,
            generator=alias,
            generator_version=backend.version,
            prompt_version=PROMPT_VERSION,
            job=job,
        )
        _record(
            draft,
            Action.REGENERATED if replaces else Action.GENERATED,
            user,
            after=draft.text,
            note="replaces draft %d" % replaces.pk if replaces else "",
        )
    return draft


def _image_flags(item: Item, text: str) -> list[dict]:
    """Where CLIP is available: flag a stated colour or product type that the product photo contradicts."""
    if "image" not in registry.get_spaces() or storage.active_generation("image") is None:
        return []
    image_vector = storage.vectors_for_items("image", [item.id]).get(item.id)
    if image_vector is None:
        return []
    subject = item.category or "product"
    own_types = set(type_words("%s %s" % (item.title, item.category)))
    colour_flags = _photo_disagrees(
        image_vector,
        set(colour_words(text)),
        set(ragrec_settings.COLOUR_CHECK_PALETTE),
        lambda colour: "a photo of a %s %s" % (colour, subject),
        "colour",
    )
    type_flags = _photo_disagrees(
        image_vector, set(type_words(text)), own_types, lambda kind: "a photo of a %s" % kind, "type"
    )
    return colour_flags + type_flags


def _photo_disagrees(image_vector, stated: set[str], alternatives: set[str], prompt, what: str) -> list[dict]:
    """Flags for stated words that CLIP ranks below another candidate for this photo (zero-shot)."""
    if not stated or not alternatives - stated:
        return []
    from .recommend import query_cache

    candidates = sorted(stated | alternatives)
    scores = {word: float(query_cache.get("image", prompt(word)) @ image_vector) for word in candidates}
    seen = max(scores, key=scores.get)
    return [
        {
            "kind": "image_disagrees",
            "message": "draft says %s '%s' but the photo looks like '%s' (CLIP)" % (what, word, seen),
            "span": word,
        }
        for word in sorted(stated)
        if word != seen
    ]


def regenerate(draft: DescriptionDraft, user) -> DescriptionDraft:
    """Replace a draft under review (or rejected) with a fresh one from the same generator."""
    if draft.status not in (Status.PENDING, Status.REJECTED):
        raise ReviewError("Only pending or rejected drafts can be regenerated.")
    new = generate_draft(draft.item.key, generator=draft.generator, user=user, replaces=draft)
    if draft.status == Status.PENDING:
        reject(draft, user, "replaced by draft %d" % new.pk)
    return new


# ---------------------------------------------------------------- review


def _record(draft, action, user, *, before="", after="", note=""):
    DescriptionEvent.objects.create(
        draft=draft,
        action=action,
        user=user if getattr(user, "pk", None) else None,
        before=before,
        after=after,
        note=note,
        generator_version=draft.generator_version,
        prompt_version=draft.prompt_version,
    )


def _require(user, permission: str) -> None:
    if not (user and user.has_perm("ragrec_django.%s" % permission)):
        raise PermissionDenied("You need the %r permission." % permission)


def edit(draft: DescriptionDraft, text: str, user) -> DescriptionDraft:
    _require(user, "review_descriptiondraft")
    if draft.status != Status.PENDING:
        raise ReviewError("Only drafts pending review can be edited.")
    clean = sanitise_output(
        text, allow_links=ragrec_settings.DESCRIPTION_ALLOW_LINKS, max_chars=ragrec_settings.DESCRIPTION_MAX_CHARS
    )
    new_text = publishable(clean.html)
    if new_text != draft.text:
        _record(draft, Action.EDITED, user, before=draft.text, after=new_text)
        draft.text = new_text
        draft.save(update_fields=["text", "updated_at"])
    return draft


def approve(draft: DescriptionDraft, user, *, text: str | None = None) -> DescriptionDraft:
    _require(user, "review_descriptiondraft")
    if text is not None:
        edit(draft, text, user)
    if draft.status != Status.PENDING:
        raise ReviewError("Only drafts pending review can be approved.")
    draft.status, draft.reviewed_by, draft.reviewed_at = Status.APPROVED, user, timezone.now()
    draft.save(update_fields=["status", "reviewed_by", "reviewed_at", "updated_at"])
    _record(draft, Action.APPROVED, user, after=draft.text)
    return draft


def reject(draft: DescriptionDraft, user, reason: str) -> DescriptionDraft:
    _require(user, "review_descriptiondraft")
    if draft.status != Status.PENDING:
        raise ReviewError("Only drafts pending review can be rejected.")
    if not reason.strip():
        raise ReviewError("Give a reason for rejecting the draft.")
    draft.status, draft.reviewed_by, draft.reviewed_at, draft.reject_reason = (
        Status.REJECTED,
        user,
        timezone.now(),
        reason,
    )
    draft.save(update_fields=["status", "reviewed_by", "reviewed_at", "reject_reason", "updated_at"])
    _record(draft, Action.REJECTED, user, note=reason)
    return draft


def publish(draft: DescriptionDraft, user) -> PublishedDescription:
    """Publish an approved draft: write it through the adapter and keep the previous text for rollback."""
    _require(user, "publish_descriptiondraft")
    if draft.status != Status.APPROVED or not draft.events.filter(action=Action.APPROVED).exists():
        raise ReviewError("A draft is published only after it was approved.")
    with transaction.atomic():
        publication = _make_current(draft.item, draft.text, user, draft=draft)
        draft.status = Status.PUBLISHED
        draft.save(update_fields=["status", "updated_at"])
        _record(draft, Action.PUBLISHED, user, before=draft.current_text, after=draft.text)
        transaction.on_commit(
            lambda: signals.description_published.send(
                sender=DescriptionDraft, draft=draft, publication=publication, user=user
            )
        )
    return publication


def rollback(publication: PublishedDescription, user) -> PublishedDescription:
    """Make an earlier published text current again (one click in the admin)."""
    _require(user, "publish_descriptiondraft")
    with transaction.atomic():
        previous = PublishedDescription.objects.filter(item=publication.item, is_current=True).first()
        restored = _make_current(publication.item, publication.text, user, draft=publication.draft)
        if publication.draft is not None:
            _record(
                publication.draft,
                Action.ROLLED_BACK,
                user,
                before=previous.text if previous else "",
                after=publication.text,
                note="restored the text published at %s" % publication.published_at.isoformat(),
            )
        transaction.on_commit(
            lambda: signals.description_rolled_back.send(
                sender=PublishedDescription, publication=restored, restored_from=publication, user=user
            )
        )
    return restored


def _make_current(item: Item, text: str, user, *, draft) -> PublishedDescription:
    adapter = get_adapter()
    host_item = adapter.get_queryset().get(pk=adapter.get_item_model()._meta.pk.to_python(item.key))
    current = PublishedDescription.objects.select_for_update().filter(item=item, is_current=True).first()
    if current is None:
        # Keep the shop's own text as the first version, so it can be restored too.
        original = adapter.get_description(host_item)
        if original:
            PublishedDescription.objects.create(
                item=item, text=original, is_current=False, published_at=item.created_at
            )
    else:
        current.is_current = False
        current.save(update_fields=["is_current"])
    publication = PublishedDescription.objects.create(
        item=item, text=text, draft=draft, is_current=True, published_by=user
    )
    if ragrec_settings.PUBLISH_TO_ITEM:
        adapter.set_description(host_item, text)
    return publication


def published_text(item_key: str) -> str | None:
    """The current published description of an item (for the template tag when not written to the item)."""
    return (
        PublishedDescription.objects.filter(item__key=str(item_key), is_current=True)
        .values_list("text", flat=True)
        .first()
    )


# ---------------------------------------------------------------- bulk jobs


def start_job(
    *,
    enqueue: Callable[[GenerationJob, list[str]], object],
    category: str | None = None,
    generator: str | None = None,
    user=None,
) -> GenerationJob:
    """Create a generation job for a category or the whole catalogue and hand it to ``enqueue``; return the job.

    ``enqueue(job, keys)`` queues the work; the admin passes ``tasks.enqueue_generation`` (Celery, own
    queue), whose workers run ``generate_job_chunk``.
    """
    items = Item.objects.filter(is_eligible=True)  # the mirror: filled by ragrec_reindex and item saves
    if category:
        items = items.filter(category=category)
    keys = list(items.order_by("id").values_list("key", flat=True))
    job = GenerationJob.objects.create(
        scope=category or "",
        generator=generator or ragrec_settings.DESCRIPTION_GENERATOR,
        total=len(keys),
        created_by=user if getattr(user, "pk", None) else None,
    )
    enqueue(job, keys)
    return job


def generate_job_chunk(job_id: int, keys: list) -> dict:
    """Generate review drafts for items ``keys`` of a GenerationJob, counting progress on the job.

    Items that already have a draft from this job are skipped, so a redelivered
    chunk does not duplicate drafts. One item's failure is counted and logged;
    the rest of the chunk goes on. Returns {"job", "done", "failed"}.
    """
    job = GenerationJob.objects.get(pk=job_id)
    GenerationJob.objects.filter(pk=job_id, status=GenerationJob.Status.QUEUED).update(
        status=GenerationJob.Status.RUNNING
    )
    done_keys = set(DescriptionDraft.objects.filter(job=job, item__key__in=keys).values_list("item__key", flat=True))
    done = failed = 0
    for key in keys:
        if str(key) in done_keys:
            continue
        try:
            generate_draft(str(key), generator=job.generator, job=job)
            done += 1
        except Exception:  # one item's failure must not stop the batch; it is counted and logged
            logger.exception("Generating a description for item %s failed", key)
            failed += 1
    GenerationJob.objects.filter(pk=job_id).update(done=F("done") + done, failed=F("failed") + failed)
    GenerationJob.objects.filter(pk=job_id, status=GenerationJob.Status.RUNNING).filter(
        total__lte=F("done") + F("failed")
    ).update(status=GenerationJob.Status.DONE, finished_at=timezone.now())
    return {"job": job_id, "done": done, "failed": failed}
