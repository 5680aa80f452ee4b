"""Back office: items as ragrec sees them, space generations with their coverage, encoding failures."""

from django.contrib import admin
from django.db.models import Count

from .models import EncodingFailure, Item, SpaceGeneration


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["key", "title", "category", "price", "in_stock", "is_eligible", "group_key", "updated_at"]
    list_filter = ["in_stock", "is_eligible", "category"]
    search_fields = ["key", "title"]
    readonly_fields = [f.name for f in Item._meta.fields]

    def has_add_permission(self, request):
        return False  # mirrored from the shop's own items by the adapter


@admin.register(SpaceGeneration)
class SpaceGenerationAdmin(admin.ModelAdmin):
    list_display = ["space", "number", "status", "encoder", "encoder_version", "dimension", "vectors", "failures_count", "activated_at"]
    list_filter = ["space", "status"]
    readonly_fields = [f.name for f in SpaceGeneration._meta.fields]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            vector_count=Count("embeddings", distinct=True), failure_count=Count("failures", distinct=True)
        )

    @admin.display(description="vectors", ordering="vector_count")
    def vectors(self, obj):
        return obj.vector_count

    @admin.display(description="failed", ordering="failure_count")
    def failures_count(self, obj):
        return obj.failure_count

    def has_add_permission(self, request):
        return False  # generations are created by encoding and `ragrec_spaces switch`


@admin.register(EncodingFailure)
class EncodingFailureAdmin(admin.ModelAdmin):
    list_display = ["item", "generation", "reason", "attempts", "updated_at"]
    list_filter = ["generation__space"]
    search_fields = ["item__key", "item__title", "reason"]
    list_select_related = ["item", "generation"]
    readonly_fields = ["item", "generation", "content_hash", "reason", "attempts", "updated_at"]

    def has_add_permission(self, request):
        return False
