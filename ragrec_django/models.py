"""Storage: the plugin's item mirror, embedding-space generations and embeddings.

The shop's own item model is never modified. ``Item`` mirrors what ranking
needs from it (through the adapter) and is keyed by the host primary key as
text, so integer and UUID keys both work.

An embedding space ("text", "image", "clip-text") is stored as one or more
*generations*: each generation is bound to one encoder version and one
dimension and has its own partial HNSW index. Queries read the active
generation only, so vectors of two models are never mixed; switching a space
to another model or dimension builds a new generation and then swaps it in.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from pgvector.django import HalfVectorField

from . import limits


class Item(models.Model):
    """Snapshot of one host item, as the adapter describes it."""

    key = models.CharField(max_length=64, unique=True, help_text="Primary key of the host item, as text.")
    title = models.CharField(max_length=500, blank=True)
    category = models.CharField(max_length=200, blank=True, db_index=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    in_stock = models.BooleanField(default=True)
    is_eligible = models.BooleanField(default=True, help_text="Whether the adapter lets this item be recommended.")
    url = models.CharField(max_length=500, blank=True)
    group_key = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="Variant group (same parent product), if any."
    )
    is_promoted = models.BooleanField(default=False, help_text="Promoted items get a share of slots (promotion quota).")
    text = models.TextField(blank=True, help_text="The item's text as the adapter builds it (for keyword search).")
    search_vector = SearchVectorField(null=True, editable=False)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        indexes = [
            GinIndex(fields=["search_vector"], name="ragrec_item_search"),
            # The ids of a category's items (the exact ANN scan under a selective filter) by an index-only scan.
            models.Index(
                fields=["category"], include=["id", "is_eligible", "price", "in_stock"], name="ragrec_item_category_ids"
            ),
        ]

    def __str__(self) -> str:
        return self.title or self.key


class SpaceGeneration(models.Model):
    """One generation of an embedding space: a fixed encoder version and dimension."""

    class Status(models.TextChoices):
        BUILDING = "building", "building"
        ACTIVE = "active", "active"
        RETIRED = "retired", "retired"

    space = models.CharField(max_length=64)
    number = models.PositiveIntegerField()
    encoder = models.CharField(max_length=64, help_text="Encoder alias in RAGREC['ENCODERS'].")
    modality = models.CharField(max_length=16)
    encoder_version = models.CharField(max_length=255)
    dimension = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BUILDING)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["space", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["space", "number"], name="ragrec_generation_unique_number"),
            models.UniqueConstraint(
                fields=["space"], condition=Q(status="active"), name="ragrec_generation_one_active"
            ),
            models.UniqueConstraint(
                fields=["space"], condition=Q(status="building"), name="ragrec_generation_one_building"
            ),
        ]

    def __str__(self) -> str:
        return "%s#%d (%s, %dd, %s)" % (self.space, self.number, self.encoder_version, self.dimension, self.status)

    @property
    def index_name(self) -> str:
        return "ragrec_hnsw_g%d" % self.pk


class Embedding(models.Model):
    """One vector per (item, space generation), with what produced it.

    The table is LIST-partitioned by generation (migration 0013, ``storage.partitions``): each generation's rows and
    its HNSW index are a table of their own, dropped whole with the generation. Its primary key in the database is
    ``(id, generation_id)`` (a partitioned table's keys hold the partition key); ``id`` stays unique by its sequence.
    """

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="embeddings")
    generation = models.ForeignKey(SpaceGeneration, on_delete=models.CASCADE, related_name="embeddings")
    vector = HalfVectorField()
    encoder_version = models.CharField(max_length=255)
    content_hash = models.CharField(max_length=64, help_text="sha256 of the encoded text or image bytes.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["generation", "item"], name="ragrec_embedding_unique_item"),
        ]
        indexes = [
            # which items were written since a time (storage.vector_cache.changed_items)
            models.Index(fields=["generation", "updated_at"], include=["item"], name="ragrec_embedding_updated"),
        ]

    def __str__(self) -> str:
        return "%s in %s" % (self.item_id, self.generation_id)


class CategoryCentroid(models.Model):
    """Where one category's vectors lie in one space generation: their mean, and how many there were.

    Computed in PostgreSQL by ``storage.centroids.refresh`` (after a promotion, after writes of a category it
    lacks, and from the host's beat schedule); ``storage.ann.nearest`` ranks the small categories whose centroids
    are nearest a query exactly, beside the index's answer (``RAGREC["HNSW"]["QUERY_CATEGORIES"]``), unless the
    radius shows that none of their items can be nearer than the index's answer.
    """

    generation = models.ForeignKey(SpaceGeneration, on_delete=models.CASCADE, related_name="centroids")
    category = models.CharField(max_length=200)
    items = models.PositiveIntegerField(help_text="Vectors of the category in the generation when computed.")
    centroid = HalfVectorField()
    radius = models.FloatField(help_text="The largest cosine distance of the category's vectors from the centroid.")
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["generation", "category"], name="ragrec_centroid_unique_category"),
        ]

    def __str__(self) -> str:
        return "%s in %s" % (self.category, self.generation_id)


class EncodingFailure(models.Model):
    """Why an item could not be encoded into a space (bad image, missing text...)."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="encoding_failures")
    generation = models.ForeignKey(SpaceGeneration, on_delete=models.CASCADE, related_name="failures")
    content_hash = models.CharField(max_length=64, blank=True)
    reason = models.TextField()
    attempts = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["generation", "item"], name="ragrec_failure_unique_item"),
        ]

    def __str__(self) -> str:
        return "%s: %s" % (self.item_id, self.reason[:60])


class TaskDelivery(models.Model):
    """How often a Celery task message was started: caps redeliveries of a poison batch."""

    task_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255)
    attempts = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return "%s (%d)" % (self.task_id, self.attempts)


class Impression(models.Model):
    """One recommendation list shown to a visitor (one row per list, not per item).

    Written by the template tags (``ragrec_render``) and the REST API, one INSERT per list;
    clicks are ``Interaction`` rows of event ``click`` pointing here. See docs/experiments.md.
    """

    class Channel(models.TextChoices):
        API = "api", "REST API"
        TEMPLATE = "template", "template tag"

    id = models.UUIDField(
        primary_key=True, default=uuid.uuid4, editable=False, help_text="Public id of the list shown."
    )
    recommender = models.CharField(max_length=32, help_text="similar, search, for_you, trending...")
    config = models.CharField(max_length=64, help_text="Serving configuration the list was ranked with.")
    experiment = models.CharField(max_length=64, blank=True, help_text="RAGREC['EXPERIMENTS'] name, if any.")
    variant = models.CharField(max_length=64, blank=True, help_text="Variant of the experiment the visitor is in.")
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.TEMPLATE)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    session_key = models.CharField(max_length=64, blank=True)
    item_keys = ArrayField(models.CharField(max_length=64), default=list, help_text="Host item keys shown, in order.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at"], name="ragrec_impression_time"),
            models.Index(fields=["recommender", "created_at"], name="ragrec_impression_rec"),
            models.Index(
                fields=["experiment", "variant", "created_at"],
                name="ragrec_impression_variant",
                condition=~Q(experiment=""),
            ),
        ]

    def __str__(self) -> str:
        return "%s (%s%s) %s" % (
            self.recommender,
            self.config,
            ", %s/%s" % (self.experiment, self.variant) if self.experiment else "",
            self.id,
        )


class Interaction(models.Model):
    """One shopper event: a view, a click on a recommendation, an add to cart, a purchase, a search.

    The table is RANGE-partitioned by calendar month (UTC) of ``created_at`` (migration 0013, ``storage.partitions``),
    so ``RAGREC["EVENT_RETENTION_MONTHS"]`` drops old months whole; its primary key in the database is
    ``(id, created_at)``. What must be unique across months (a visitor's idempotency key, one click per impression and
    item) is kept in ``EventClaim``.
    """

    class Event(models.TextChoices):
        VIEW = "view", "view"
        CLICK = "click", "click"
        ADD_TO_CART = "add_to_cart", "add to cart"
        PURCHASE = "purchase", "purchase"
        SEARCH = "search", "search"

    event = models.CharField(max_length=16, choices=Event.choices)
    item = models.ForeignKey(Item, null=True, blank=True, on_delete=models.CASCADE, related_name="interactions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    session_key = models.CharField(max_length=64, blank=True, help_text="Anonymous session (or any visitor id).")
    order_id = models.CharField(
        max_length=limits.ORDER_ID_MAX_CHARS,
        blank=True,
        help_text="Basket or order the event belongs to; a basket is one visitor's order id.",
    )
    quantity = models.PositiveIntegerField(default=1)
    query = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=64, blank=True, help_text="Recommender that showed the item (for clicks).")
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)
    idempotency_scope = models.CharField(
        max_length=80,
        blank=True,
        default="",
        db_default="",
        help_text="Whose key idempotency_key is: user:<id> or session:<key> (keys are unique per visitor).",
    )
    payload_hash = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text="sha256 of the event as the client sent it with its idempotency key (a replay must match).",
    )
    impression = models.ForeignKey(
        Impression,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="interactions",
        db_index=False,
        help_text="For a click: the recommendation list it was shown in.",
    )
    origin = models.CharField(
        max_length=16,
        blank=True,
        default="",
        db_default="",
        help_text="Keyed hash of the client address that reported it (empty: not from a request); popularity "
        "counts a capped number of visitors per origin.",
    )
    verified = models.BooleanField(
        default=True,
        db_default=True,
        help_text="Counts toward trending and co-purchases: a signed-in user, a session the server issued, or "
        "recorded by the server itself. False: an API client's session key the server never issued.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["impression"], name="ragrec_event_impression", condition=Q(impression__isnull=False)),
            models.Index(fields=["user", "-created_at"], name="ragrec_event_user"),
            models.Index(fields=["session_key", "-created_at"], name="ragrec_event_session"),
            models.Index(fields=["event", "-created_at"], name="ragrec_event_recent"),
            models.Index(fields=["item", "event"], name="ragrec_event_item"),
            models.Index(fields=["order_id"], name="ragrec_event_order", condition=~Q(order_id="")),
        ]

    def __str__(self) -> str:
        return "%s %s" % (self.event, self.item_id or self.query)


class EventClaim(models.Model):
    """What an event holds that no other event may: its visitor's idempotency key, and for a click on a shown list,
    the (impression, item) pair. One row per such event, in an unpartitioned table: the event table is partitioned by
    month, and a unique index there could only hold within a month.

    Written with the event: ``storage.insert_events`` claims before inserting and leaves out the events whose claim
    is taken; any other insert is claimed by the event table's trigger, which fails it as a unique constraint would
    (``IntegrityError``). Deleting an event releases its claim; retention drops the claims of the months it drops.
    """

    event_id = models.BigIntegerField(primary_key=True, help_text="The event's id (Interaction.id).")
    created_at = models.DateTimeField(help_text="The event's time: retention drops claims with their month.")
    idempotency_scope = models.CharField(max_length=80, blank=True, default="")
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)
    payload_hash = models.CharField(max_length=64, blank=True, default="", help_text="As on the event.")
    click_impression = models.UUIDField(null=True, blank=True, help_text="For a click: the impression it was shown in.")
    click_item = models.BigIntegerField(null=True, blank=True, help_text="For a click: the item clicked (Item.id).")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_scope", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="ragrec_claim_idempotency",
            ),
            models.UniqueConstraint(
                fields=["click_impression", "click_item"],
                condition=Q(click_impression__isnull=False),
                name="ragrec_claim_one_click",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="ragrec_claim_time")]

    def __str__(self) -> str:
        return "claim of event %s" % self.event_id


class ServingConfig(models.Model):
    """Named ranking rules a merchandiser edits: filters, pins, boosts, quota, diversity."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=255, blank=True)
    rules = models.JSONField(default=dict, blank=True, help_text="See ragrec_django.ranking.rules.ServingRules.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from .ranking.rules import RulesError, ServingRules

        try:
            ServingRules.from_dict(self.rules or {})
        except RulesError as exc:
            raise ValidationError({"rules": str(exc)}) from exc


class ComplementPair(models.Model):
    """A "goes with" pair: proposed from content or purchases, approved or rejected by a merchandiser."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", "proposed"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="complement_pairs")
    complement = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(default=0.0)
    source = models.CharField(max_length=16, default="content")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item", "-score"]
        constraints = [
            models.UniqueConstraint(fields=["item", "complement"], name="ragrec_complement_unique"),
            models.CheckConstraint(condition=~Q(item=models.F("complement")), name="ragrec_complement_not_self"),
        ]

    def __str__(self) -> str:
        return "%s + %s (%s)" % (self.item_id, self.complement_id, self.status)


class SearchSynonym(models.Model):
    """Words a merchandiser teaches search: "jumper" also finds "sweater" (and, two-way, the other way round).

    Applied at query time to keyword search and query understanding (``services.search``); a change is
    used by every process within ``services.search.SYNONYMS_TTL_SECONDS``, without a restart.
    """

    term = models.CharField(max_length=200, help_text='What shoppers type, e.g. "jumper".')
    synonyms = models.CharField(
        max_length=500, help_text='Also searched for it, separated by commas: "sweater, pullover".'
    )
    two_way = models.BooleanField(
        default=True, help_text="Each word also finds the others (off: only the term is widened to the synonyms)."
    )
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["term"]

    def __str__(self) -> str:
        return "%s %s %s" % (self.term, "↔" if self.two_way else "→", self.synonyms)

    @property
    def synonym_list(self) -> list[str]:
        return [word.strip() for word in self.synonyms.split(",") if word.strip()]


class SearchLog(models.Model):
    """One text search made for a visitor (search analytics): what was asked, how many results, what was shown.

    Clicks, adds to cart and purchases are the visitor's own events on the items shown (``services.search``);
    rows older than ``RAGREC["SEARCH_LOG_DAYS"]`` are deleted. No personal data beyond the visitor key.
    """

    query = models.CharField(max_length=300, help_text="As typed.")
    normalised = models.CharField(max_length=300, help_text="Lower case, spelling corrected, spaces collapsed.")
    result_count = models.PositiveIntegerField()
    matched = models.PositiveIntegerField(
        default=0, help_text="Items whose text has the query's words (0: only the semantic retrievers answered)."
    )
    shown_query = models.CharField(
        max_length=300, blank=True, help_text="When nothing matched: the query shown instead."
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    session_key = models.CharField(max_length=64, blank=True)
    item_keys = ArrayField(models.CharField(max_length=64), default=list, help_text="Host item keys shown, in order.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at"], name="ragrec_search_time"),
            models.Index(fields=["normalised", "created_at"], name="ragrec_search_query"),
        ]

    def __str__(self) -> str:
        return "%s (%d)" % (self.query, self.result_count)


class SearchRule(models.Model):
    """What a merchandiser decides for one query: open a page instead ("gift card" -> /pages/gift-cards/), or pin,
    boost and hide items among its results (serving rules' ``pin``, ``boost``, ``boost_categories``, ``hide``).

    Matched against the whole query, case, punctuation and spaces aside, as typed or spelling-corrected; validated by
    ``services.search.check_search_rule`` (the admin's form) and used by every process within
    ``storage.search.SYNONYMS_TTL_SECONDS``, without a restart.
    """

    query = models.CharField(max_length=200, unique=True, help_text='The query, e.g. "jumper" (stored normalised).')
    redirect_url = models.CharField(
        max_length=500,
        blank=True,
        help_text='Send the shopper to this page: a path of this site ("/category/mugs/") or an http(s) URL.',
    )
    rules = models.JSONField(
        default=dict,
        blank=True,
        help_text='Pins and boosts among the results, as serving rules: {"pin": [[item id, position from 0]], '
        '"boost": {"item id": 0.05}, "boost_categories": {"Sweaters": 0.05}, "hide": [item id, ...]}.',
    )
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["query"]

    def __str__(self) -> str:
        return "%s -> %s" % (self.query, self.redirect_url or "pins/boosts")


class GenerationJob(models.Model):
    """A bulk generation run (a category or the whole catalogue), with progress for the admin."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"

    scope = models.CharField(max_length=200, help_text="Category name, or empty for the whole catalogue.", blank=True)
    generator = models.CharField(max_length=64)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return "%s: %d/%d" % (self.scope or "whole catalogue", self.done + self.failed, self.total)


class DescriptionDraft(models.Model):
    """A generated product description awaiting (or past) human review. Never published automatically."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending review"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        PUBLISHED = "published", "published"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="description_drafts")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    current_text = models.TextField(blank=True, help_text="The product's description when the draft was made.")
    generated_text = models.TextField(help_text="Sanitised generator output, with its citation markers.")
    text = models.TextField(help_text="The text to publish (reviewers may edit it before approving).")
    citations = models.JSONField(default=list, blank=True)
    sources = models.JSONField(
        default=list, blank=True, help_text="Product fields and retrieved facts it was grounded on."
    )
    flags = models.JSONField(default=list, blank=True, help_text="Automatic checks the reviewer must look at.")
    generator = models.CharField(max_length=64)
    generator_version = models.CharField(max_length=255)
    prompt_version = models.CharField(max_length=64)
    job = models.ForeignKey(GenerationJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="drafts")
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reject_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("review_descriptiondraft", "Can review description drafts (edit, approve, reject, regenerate)"),
            ("publish_descriptiondraft", "Can publish approved descriptions and roll back"),
        ]

    def __str__(self) -> str:
        return "Draft for %s (%s)" % (self.item, self.get_status_display())

    @property
    def flag_count(self) -> int:
        return len(self.flags or [])


class DescriptionEvent(models.Model):
    """Audit trail of every step on a draft: who, when, what changed, with which generator and prompt."""

    class Action(models.TextChoices):
        GENERATED = "generated", "generated"
        EDITED = "edited", "edited"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        REGENERATED = "regenerated", "regenerated"
        PUBLISHED = "published", "published"
        ROLLED_BACK = "rolled_back", "rolled back"

    draft = models.ForeignKey(
        DescriptionDraft,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        help_text="Empty once the draft is deleted: the audit trail outlives it (append-only).",
    )
    item_key = models.CharField(
        max_length=64, blank=True, default="", help_text="The draft's item (kept with the event)."
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    before = models.TextField(blank=True)
    after = models.TextField(blank=True)
    note = models.TextField(blank=True)
    generator_version = models.CharField(max_length=255, blank=True)
    prompt_version = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return "%s %s" % (self.action, self.draft_id or "(deleted draft of item %s)" % self.item_key)

    def save(self, *args, **kwargs):
        if not self.item_key and self.draft_id:
            self.item_key = self.draft.item.key
        super().save(*args, **kwargs)


class PublishedDescription(models.Model):
    """Every text ever published for an item; exactly one is current. Rollback re-publishes an old one."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="published_descriptions")
    text = models.TextField()
    draft = models.ForeignKey(
        DescriptionDraft, null=True, blank=True, on_delete=models.SET_NULL, related_name="publications"
    )
    is_current = models.BooleanField(default=False)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-published_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item"], condition=Q(is_current=True), name="ragrec_one_current_description"
            ),
        ]

    def __str__(self) -> str:
        return "%s @ %s" % (self.item, self.published_at)


class RankerModel(models.Model):
    """One trained learned-ranker version (issue 14): its LightGBM model, item factors and description.

    Stored in the database so that every web and worker process loads the same version; at most one
    is active per recommender (the same shape as space generations). See ``ragrec_django.services.ranker``.
    """

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "candidate"
        ACTIVE = "active", "active"
        RETIRED = "retired", "retired"

    recommender = models.CharField(max_length=32, default="for_you")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    content_hash = models.CharField(max_length=64, help_text="sha256 of the model text, feature list and item factors.")
    model_text = models.TextField(help_text="LightGBM text model.")
    factors = models.BinaryField(blank=True, default=b"", help_text="Item factors (.npz bytes), if any.")
    metadata = models.JSONField(default=dict, blank=True, help_text="Features, parameters, data window, metrics, gate.")
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["recommender", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["recommender", "number"], name="ragrec_ranker_unique_number"),
            models.UniqueConstraint(
                fields=["recommender"], condition=Q(status="active"), name="ragrec_ranker_one_active"
            ),
        ]

    def __str__(self) -> str:
        return "%s ranker #%d (%s, %s)" % (self.recommender, self.number, self.content_hash[:12], self.status)


class RankerSignalSnapshot(models.Model):
    """The learned ranker's shared signals as of one instant: the popular list and the parameters the item rows
    (``RankerItemSignals``) were computed with. One row, replaced with the item rows in one transaction by
    ``services.ranker.refresh_signals``; serving reads it instead of aggregating the event table per request."""

    as_of = models.DateTimeField(help_text="The signals count the events strictly before this instant.")
    built_at = models.DateTimeField(default=timezone.now)
    seconds = models.FloatField(default=0.0, help_text="How long the refresh took.")
    windows = models.JSONField(default=list, help_text="Popularity windows (days) of RankerItemSignals.popularity.")
    orders_per_item = models.PositiveIntegerField(help_text="Each item's latest orders its partners are counted in.")
    max_per_source = models.IntegerField(
        null=True, blank=True, help_text="Orders one origin counts per item (None: all)."
    )
    popular_days = models.FloatField()
    popular = models.JSONField(default=list, help_text="[[item id, orders], ...] best first, over popular_days.")
    items = models.PositiveIntegerField(default=0, help_text="Item rows written.")

    def __str__(self) -> str:
        return "ranker signals as of %s (%d items)" % (self.as_of.isoformat(timespec="seconds"), self.items)


class RankerItemSignals(models.Model):
    """One item's shared ranker signals as of ``RankerSignalSnapshot.as_of`` (verified purchases, origins capped):
    orders holding it per popularity window, its first order in the longest window, and its co-purchase
    partners counted in its latest ``orders_per_item`` orders (big-endian int8 ids ascending, int4 counts)."""

    item = models.OneToOneField(Item, primary_key=True, on_delete=models.CASCADE, related_name="+")
    popularity = ArrayField(models.IntegerField(), default=list)
    first_seen = models.DateTimeField(null=True, blank=True)
    orders_read = models.IntegerField(default=0)
    partners = models.BinaryField(default=b"")
    partner_counts = models.BinaryField(default=b"")


class Conversation(models.Model):
    """A shopper's conversation with the assistant (``services.conversation``): the visitor it belongs to
    and the dialogue state carried across turns. Deleted by the shopper or after ``CONVERSATION_RETENTION_DAYS``
    (``ragrec_purge_conversations``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    session_key = models.CharField(max_length=64, blank=True)
    state = models.JSONField(default=dict, blank=True, help_text="ragrec_django.generation.dialogue.DialogueState.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "session_key"], name="ragrec_conversation_visitor")]

    def __str__(self) -> str:
        return "conversation %s" % self.id


class Turn(models.Model):
    """One exchange of a conversation: the shopper's message or feedback, the answer, the question asked,
    the products shown and the state after it."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    number = models.PositiveIntegerField()
    message = models.TextField(blank=True)
    feedback = models.JSONField(default=dict, blank=True, help_text='{"item": key, "action": "like"...}, if any.')
    answer = models.TextField(blank=True)
    question = models.TextField(blank=True)
    item_keys = models.JSONField(default=list, blank=True, help_text="The products shown, in order.")
    state = models.JSONField(default=dict, blank=True, help_text="The state after this turn.")
    created_at = models.DateTimeField(auto_now_add=True)
    flagged_at = models.DateTimeField(null=True, blank=True, help_text="When staff flagged the turn as a bad one.")
    flagged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    flag_note = models.TextField(blank=True, help_text="What is wrong with the turn (optional).")

    class Meta:
        ordering = ["conversation", "number"]
        constraints = [models.UniqueConstraint(fields=["conversation", "number"], name="ragrec_turn_unique_number")]

    def __str__(self) -> str:
        return "turn %d of %s" % (self.number, self.conversation_id)
