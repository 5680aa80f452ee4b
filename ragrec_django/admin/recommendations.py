"""Back office: items, space generations with coverage, failures, events, serving configurations, complements."""

from django.contrib import admin
from django.db.models import Count
from django.utils import timezone

from ..models import ComplementPair, EncodingFailure, Impression, Interaction, Item, ServingConfig, SpaceGeneration


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
    list_display = [
        "space",
        "number",
        "status",
        "encoder",
        "encoder_version",
        "dimension",
        "vectors",
        "failures_count",
        "activated_at",
    ]
    list_filter = ["space", "status"]
    readonly_fields = [f.name for f in SpaceGeneration._meta.fields]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(vector_count=Count("embeddings", distinct=True), failure_count=Count("failures", distinct=True))
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


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "event",
        "item",
        "user",
        "session_key",
        "order_id",
        "quantity",
        "query",
        "source",
        "impression",
    ]
    list_filter = ["event", "source"]
    search_fields = ["item__title", "item__key", "session_key", "order_id", "query"]
    list_select_related = ["item", "user", "impression"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Interaction._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Impression)
class ImpressionAdmin(admin.ModelAdmin):
    """Recommendation lists shown (read-only); the experiments dashboard sums them up."""

    list_display = ["created_at", "recommender", "config", "experiment", "variant", "channel", "user", "session_key"]
    list_filter = ["recommender", "experiment", "variant", "channel"]
    search_fields = ["id", "session_key", "experiment", "variant"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Impression._meta.fields]
    show_full_result_count = False  # a large table: no COUNT(*) of it on every page

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ServingConfig)
class ServingConfigAdmin(admin.ModelAdmin):
    """Merchandisers edit ranking rules here; a row overrides the setting of the same name."""

    list_display = ["name", "description", "updated_at"]
    search_fields = ["name", "description"]


@admin.register(ComplementPair)
class ComplementPairAdmin(admin.ModelAdmin):
    list_display = ["item", "complement", "score", "source", "status", "reviewed_by", "reviewed_at"]
    list_filter = ["status", "source"]
    search_fields = ["item__title", "complement__title"]
    list_select_related = ["item", "complement", "reviewed_by"]
    raw_id_fields = ["item", "complement"]
    readonly_fields = ["reviewed_by", "reviewed_at", "created_at"]
    actions = ["approve", "reject"]

    def _review(self, request, queryset, status):
        updated = queryset.update(status=status, reviewed_by=request.user, reviewed_at=timezone.now())
        self.message_user(request, "%d pair(s) marked %s." % (updated, status))

    @admin.action(description="Approve selected pairs", permissions=["change"])
    def approve(self, request, queryset):
        self._review(request, queryset, ComplementPair.Status.APPROVED)

    @admin.action(description="Reject selected pairs", permissions=["change"])
    def reject(self, request, queryset):
        self._review(request, queryset, ComplementPair.Status.REJECTED)
