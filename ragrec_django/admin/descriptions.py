"""The description review queue: side-by-side diff, edit, approve, reject, regenerate, publish, roll back.

Reviewing needs ``ragrec_django.review_descriptiondraft``; publishing and
rolling back need ``ragrec_django.publish_descriptiondraft``. Nothing is
published without an approval record.

The audit trail is append-only: no one deletes drafts, their events or published texts here (not even
a superuser: a draft is rejected, not deleted), and events outlive a draft deleted in code
(``DescriptionEvent.draft`` is set to null, the item's key stays); "Description audit trail" lists them all.
"""

from __future__ import annotations

import difflib

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from ..models import DescriptionDraft, DescriptionEvent, GenerationJob, Item, PublishedDescription
from ..services import descriptions

Status = DescriptionDraft.Status


def word_diff(before: str, after: str) -> str:
    """HTML of a word-level diff (<del>/<ins>), every word escaped."""
    a, b = before.split(), after.split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            parts.append("<del>%s</del>" % escape(" ".join(a[i1:i2])))
        if op in ("insert", "replace"):
            parts.append("<ins>%s</ins>" % escape(" ".join(b[j1:j2])))
        if op == "equal":
            parts.append(escape(" ".join(a[i1:i2])))
    return mark_safe(" ".join(parts))


class ReasonActionForm(ActionForm):
    reason = forms.CharField(required=False, label="Reason (for reject)", max_length=500)


class DescriptionEventInline(admin.TabularInline):
    model = DescriptionEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "action", "user", "note", "generator_version", "prompt_version", "change"]
    readonly_fields = fields

    @admin.display(description="what changed")
    def change(self, event):
        return word_diff(event.before, event.after) if event.before or event.after else ""

    def has_add_permission(self, request, obj=None):
        return False


class CategoryFilter(admin.SimpleListFilter):
    title = "category"
    parameter_name = "category"

    def lookups(self, request, model_admin):
        categories = (
            Item.objects.exclude(category="").values_list("category", flat=True).distinct().order_by("category")
        )
        return [(c, c) for c in categories]

    def queryset(self, request, queryset):
        return queryset.filter(item__category=self.value()) if self.value() else queryset


@admin.register(DescriptionDraft)
class DescriptionDraftAdmin(admin.ModelAdmin):
    list_display = ["item", "status", "flags_shown", "generator", "prompt_version", "created_at", "reviewed_by"]
    list_filter = ["status", CategoryFilter, "generator", "prompt_version"]
    search_fields = ["item__title", "item__key", "text"]
    list_select_related = ["item", "reviewed_by"]
    inlines = [DescriptionEventInline]
    action_form = ReasonActionForm
    actions = ["approve_selected", "reject_selected", "publish_selected", "regenerate_selected"]
    fields = [
        "item",
        "status",
        "side_by_side",
        "text",
        "flag_list",
        "citation_list",
        "source_list",
        "generator",
        "generator_version",
        "prompt_version",
        "reviewed_by",
        "reviewed_at",
        "reject_reason",
    ]
    change_form_template = "admin/ragrec_django/descriptiondraft/change_form.html"

    def get_readonly_fields(self, request, obj=None):
        editable = obj is not None and obj.status == Status.PENDING and self._can(request, "review")
        return [f for f in self.fields if f != "text" or not editable]

    def has_add_permission(self, request):
        return False  # drafts come from generation, never typed in

    def has_delete_permission(self, request, obj=None):
        return False  # rejected, never deleted: a draft's history is the audit trail

    def has_change_permission(self, request, obj=None):
        return (
            self._can(request, "review") or self._can(request, "publish") or super().has_view_permission(request, obj)
        )

    @staticmethod
    def _can(request, what: str) -> bool:
        return request.user.has_perm("ragrec_django.%s_descriptiondraft" % what)

    # -- display ---------------------------------------------------------------------------

    @admin.display(description="flags")
    def flags_shown(self, draft):
        return format_html('<strong style="color:#b00">{}</strong>', draft.flag_count) if draft.flag_count else "0"

    @admin.display(description="current vs draft")
    def side_by_side(self, draft):
        return format_html(
            '<div class="ragrec-sbs"><div><h4>Current</h4><p>{}</p></div><div><h4>Draft</h4><p>{}</p></div>'
            "<div><h4>Changes</h4><p>{}</p></div></div>",
            draft.current_text or "(none)",
            draft.text,
            word_diff(draft.current_text, draft.text),
        )

    @admin.display(description="checks to look at")
    def flag_list(self, draft):
        if not draft.flags:
            return "none"
        return format_html(
            "<ul>{}</ul>",
            mark_safe(
                "".join(
                    format_html("<li><strong>{}</strong>: {}</li>", f.get("kind", ""), f.get("message", ""))
                    for f in draft.flags
                )
            ),
        )

    @admin.display(description="sentences and what they rest on")
    def citation_list(self, draft):
        return format_html(
            "<ol>{}</ol>",
            mark_safe(
                "".join(
                    format_html("<li>{} <em>[{}]</em></li>", s.get("text", ""), ", ".join(s.get("citations", [])))
                    for s in draft.citations
                )
            ),
        )

    @admin.display(description="grounded on")
    def source_list(self, draft):
        rows = []
        for source in draft.sources:
            if source.get("kind") == "product":
                fields = ", ".join("%s: %s" % (k, v) for k, v in source.get("fields", {}).items())
                rows.append(format_html("<li>this product: {}</li>", fields))
            else:
                rows.append(
                    format_html(
                        "<li>[source:{}] {}: {}</li>",
                        source.get("id", ""),
                        source.get("title", ""),
                        source.get("text", ""),
                    )
                )
        return format_html("<ul>{}</ul>", mark_safe("".join(rows)))

    # -- saving an edit goes through the service (audit trail) -----------------------------

    def save_model(self, request, obj, form, change):
        if "text" in form.changed_data:
            new_text = obj.text
            obj.text = form.initial.get("text", "")
            descriptions.edit(obj, new_text, request.user)

    # -- buttons on the change page ---------------------------------------------------------

    def get_urls(self):
        step = self.admin_site.admin_view(self.review_step)
        return [
            path("<int:pk>/review/<str:step>/", step, name="ragrec_django_descriptiondraft_step")
        ] + super().get_urls()

    def review_step(self, request, pk: int, step: str):
        draft = get_object_or_404(DescriptionDraft, pk=pk)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:ragrec_django_descriptiondraft_change", args=[pk]))
        try:
            if step == "approve":
                descriptions.approve(draft, request.user, text=request.POST.get("text"))
                self.message_user(request, "Approved. Publishing is a separate step.")
            elif step == "reject":
                descriptions.reject(draft, request.user, request.POST.get("reason", ""))
                self.message_user(request, "Rejected.")
            elif step == "regenerate":
                if not self._can(request, "review"):
                    raise PermissionDenied("You need the review permission.")
                draft = descriptions.regenerate(draft, request.user)
                self.message_user(request, "A new draft was generated.")
            elif step == "publish":
                descriptions.publish(draft, request.user)
                self.message_user(request, "Published to the product.")
            else:
                raise PermissionDenied("Unknown step.")
        except descriptions.ReviewError as exc:
            self.message_user(request, str(exc), level=messages.ERROR)
        except PermissionDenied as exc:
            self.message_user(request, str(exc) or "Not allowed.", level=messages.ERROR)
        return HttpResponseRedirect(reverse("admin:ragrec_django_descriptiondraft_change", args=[draft.pk]))

    # -- bulk actions ------------------------------------------------------------------------

    def _bulk(self, request, queryset, step, done_message):
        ok = 0
        for draft in queryset:
            try:
                step(draft)
                ok += 1
            except (descriptions.ReviewError, PermissionDenied) as exc:
                self.message_user(request, "%s: %s" % (draft, exc or "not allowed"), level=messages.WARNING)
        self.message_user(request, done_message % ok)

    @admin.action(description="Approve selected drafts")
    def approve_selected(self, request, queryset):
        self._bulk(request, queryset, lambda d: descriptions.approve(d, request.user), "%d draft(s) approved.")

    @admin.action(description="Reject selected drafts (give a reason)")
    def reject_selected(self, request, queryset):
        reason = request.POST.get("reason", "")
        self._bulk(request, queryset, lambda d: descriptions.reject(d, request.user, reason), "%d draft(s) rejected.")

    @admin.action(description="Publish selected approved drafts")
    def publish_selected(self, request, queryset):
        self._bulk(request, queryset, lambda d: descriptions.publish(d, request.user), "%d draft(s) published.")

    @admin.action(description="Regenerate selected drafts")
    def regenerate_selected(self, request, queryset):
        if not self._can(request, "review"):
            self.message_user(request, "You need the review permission.", level=messages.ERROR)
            return
        self._bulk(request, queryset, lambda d: descriptions.regenerate(d, request.user), "%d draft(s) regenerated.")


@admin.register(PublishedDescription)
class PublishedDescriptionAdmin(admin.ModelAdmin):
    """Every published text per item; "restore" makes an earlier one current again."""

    list_display = ["item", "published_at", "published_by", "is_current", "excerpt", "restore"]
    list_filter = ["is_current"]
    search_fields = ["item__title", "item__key", "text"]
    list_select_related = ["item", "published_by"]
    readonly_fields = ["item", "text", "draft", "is_current", "published_by", "published_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # publication history: restore an earlier text instead

    @admin.display(description="text")
    def excerpt(self, publication):
        return publication.text[:120]

    @admin.display(description="")
    def restore(self, publication):
        if publication.is_current:
            return "current"
        url = reverse("admin:ragrec_django_publisheddescription_restore", args=[publication.pk])
        return format_html('<a href="{}">Restore this text…</a>', url)

    def get_urls(self):
        view = self.admin_site.admin_view(self.restore_view)
        return [path("<int:pk>/restore/", view, name="ragrec_django_publisheddescription_restore")] + super().get_urls()

    def restore_view(self, request, pk: int):
        """GET: confirm with a diff against the current text; POST: restore (publish permission)."""
        publication = get_object_or_404(PublishedDescription, pk=pk)
        if request.method == "POST":
            try:
                descriptions.rollback(publication, request.user)
                self.message_user(request, "Restored the text published at %s." % publication.published_at)
            except PermissionDenied as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
            return HttpResponseRedirect(
                reverse("admin:ragrec_django_publisheddescription_changelist") + "?q=%s" % publication.item.key
            )
        current = PublishedDescription.objects.filter(item=publication.item, is_current=True).first()
        context = {
            **self.admin_site.each_context(request),
            "title": "Restore an earlier description",
            "opts": self.model._meta,
            "publication": publication,
            "diff": word_diff(current.text if current else "", publication.text),
        }
        return TemplateResponse(request, "admin/ragrec_django/publisheddescription/restore.html", context)


@admin.register(DescriptionEvent)
class DescriptionEventAdmin(admin.ModelAdmin):
    """The audit trail of description drafts, read-only, including events of drafts deleted since."""

    list_display = ["created_at", "action", "item_key", "draft", "user", "note"]
    list_filter = ["action"]
    search_fields = ["item_key", "note", "after"]
    list_select_related = ["draft", "user"]
    readonly_fields = [
        "draft",
        "item_key",
        "action",
        "user",
        "before",
        "after",
        "note",
        "generator_version",
        "prompt_version",
        "created_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class StartJobForm(forms.Form):
    category = forms.ChoiceField(required=False, help_text="Leave empty for the whole catalogue.")
    generator = forms.CharField(required=False, help_text="Generator alias (default: RAGREC['DESCRIPTION_GENERATOR']).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        categories = (
            Item.objects.exclude(category="").values_list("category", flat=True).distinct().order_by("category")
        )
        self.fields["category"].choices = [("", "whole catalogue")] + [(c, c) for c in categories]


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["__str__", "generator", "status", "progress", "failed", "created_by", "created_at", "finished_at"]
    list_filter = ["status", "generator"]
    readonly_fields = [
        "scope",
        "generator",
        "total",
        "done",
        "failed",
        "status",
        "created_by",
        "created_at",
        "finished_at",
    ]

    @admin.display(description="progress")
    def progress(self, job):
        share = (job.done + job.failed) * 100 // job.total if job.total else 100
        return format_html(
            '<progress max="100" value="{}" aria-label="{}%">{}%</progress> {}%', share, share, share, share
        )

    def has_add_permission(self, request):
        return request.user.has_perm("ragrec_django.review_descriptiondraft")

    def has_view_permission(self, request, obj=None):
        return self.has_add_permission(request) or super().has_view_permission(request, obj)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def add_view(self, request, form_url="", extra_context=None):
        """ "Add" starts a bulk generation for a category or the whole catalogue."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = StartJobForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            from ..tasks import enqueue_generation  # Celery is optional: imported when a job is started

            job = descriptions.start_job(
                enqueue=enqueue_generation,
                category=form.cleaned_data["category"] or None,
                generator=form.cleaned_data["generator"] or None,
                user=request.user,
            )
            self.message_user(
                request, "Queued %d item(s) for generation; drafts appear in the review queue." % job.total
            )
            return HttpResponseRedirect(reverse("admin:ragrec_django_generationjob_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Generate descriptions",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ragrec_django/generationjob/start.html", context)
