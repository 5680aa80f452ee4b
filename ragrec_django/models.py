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

from django.db import models
from django.db.models import Q
from pgvector.django import HalfVectorField


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
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

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
    """One vector per (item, space generation), with what produced it."""

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

    def __str__(self) -> str:
        return "%s in %s" % (self.item_id, self.generation_id)


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
