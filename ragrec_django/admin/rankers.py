"""Back office: learned ranker versions with their metrics; promote one or roll back (like space generations)."""

from django.contrib import admin, messages

from ..models import RankerModel
from ..services import ranker


@admin.register(RankerModel)
class RankerModelAdmin(admin.ModelAdmin):
    list_display = [
        "recommender",
        "number",
        "status",
        "short_hash",
        "validation_ndcg",
        "holdout",
        "best_iteration",
        "created_at",
        "activated_at",
    ]
    list_filter = ["recommender", "status"]
    readonly_fields = ["recommender", "number", "status", "content_hash", "metadata", "created_at", "activated_at"]
    exclude = ["model_text", "factors"]
    actions = ["promote", "roll_back"]

    @admin.display(description="hash")
    def short_hash(self, obj):
        return obj.content_hash[:12]

    @admin.display(description="validation nDCG@10")
    def validation_ndcg(self, obj):
        return (obj.metadata.get("validation") or {}).get("ndcg@10")

    @admin.display(description="hold-out nDCG@10 (learned vs serving)")
    def holdout(self, obj):
        gate = obj.metadata.get("gate") or {}
        if "learned_ndcg@10" not in gate:
            return "-"
        return "%.4f vs %.4f (%s)" % (gate["learned_ndcg@10"], gate["baseline_ndcg@10"], gate.get("against", ""))

    @admin.display(description="rounds")
    def best_iteration(self, obj):
        return obj.metadata.get("best_iteration")

    @admin.action(description="Promote the selected version (serve it)", permissions=["change"])
    def promote(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", messages.WARNING)
            return
        version = ranker.promote_version(queryset.get())
        self.message_user(request, "%s is now served." % version)

    @admin.action(description="Roll back to the previously active version", permissions=["change"])
    def roll_back(self, request, queryset):
        recommenders = set(queryset.values_list("recommender", flat=True)) or {"for_you"}
        for recommender in sorted(recommenders):
            previous = ranker.rollback_version(recommender)
            self.message_user(
                request,
                "%s: %s"
                % (recommender, "now serving %s." % previous if previous else "no earlier version; fusion serves."),
            )

    def has_add_permission(self, request):
        return False  # versions are trained by ragrec_train_ranker
