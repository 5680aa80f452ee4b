"""Back office: the assistant's conversations, read-only, and flagging a bad turn.

The list filters by outcome (``services.conversation_review``: ended in basket, abandoned, other); a
conversation's page shows each turn: the shopper's message or feedback, the answer and question, what the
assistant understood (the state's chips, and the whole state) and the products it showed. Nothing here
adds, changes or deletes a conversation (shoppers delete theirs; ``ragrec_purge_conversations`` the old
ones). "Flag this turn" (needs ``ragrec_django.change_turn``) marks a bad turn with an optional note; each
flag and unflag is written to the conversation's admin history (``LogEntry``), like other staff changes.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from ..exceptions import BadQuery
from ..models import Conversation, Turn
from ..services import conversation_review as review

FLAG_PERMISSION = "ragrec_django.change_turn"


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return list(review.OUTCOMES.items())

    def queryset(self, request, queryset):
        if self.value() in review.OUTCOMES:
            return review.with_outcome(queryset, self.value())
        return queryset


class TurnInline(admin.StackedInline):
    model = Turn
    extra = 0
    can_delete = False
    fields = [
        "number",
        "created_at",
        "message",
        "feedback_shown",
        "answer",
        "question",
        "understood",
        "products",
        "state_shown",
        "flag",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        """The turns are part of the conversation: whoever may view it sees them."""
        return request.user.has_perm("ragrec_django.view_conversation") or super().has_view_permission(request, obj)

    @admin.display(description="feedback")
    def feedback_shown(self, turn):
        return ", ".join("%s: %s" % pair for pair in sorted(turn.feedback.items())) if turn.feedback else "-"

    @admin.display(description="understood (state after the turn)")
    def understood(self, turn):
        return ", ".join(review.understood(turn)) or "-"

    @admin.display(description="products shown")
    def products(self, turn):
        shown = review.products_shown(turn)
        if not shown:
            return "-"
        rows = format_html_join(
            "",
            "<li>{}. {} <code>{}</code>{}</li>",
            (
                (p.position, p.title or "(no longer in the catalogue)", p.key, " - %s" % p.price if p.price else "")
                for p in shown
            ),
        )
        return format_html('<ol class="ragrec-shown" style="margin:0;padding-left:1.5em">{}</ol>', rows)

    @admin.display(description="state (JSON)")
    def state_shown(self, turn):
        return format_html(
            "<details><summary>show</summary><pre>{}</pre></details>", json.dumps(turn.state, indent=1, sort_keys=True)
        )

    @admin.display(description="flag")
    def flag(self, turn):
        url = reverse("admin:ragrec_django_conversation_flag", args=[turn.conversation_id, turn.number])
        if turn.flagged_at:
            return format_html(
                '<strong style="color:#b00">Flagged</strong> by {} at {}: {} (<a href="{}">change</a>)',
                turn.flagged_by or "a deleted user",
                turn.flagged_at.strftime("%Y-%m-%d %H:%M"),
                turn.flag_note or "no note",
                url,
            )
        return format_html('<a href="{}">Flag this turn…</a>', url)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "visitor", "turn_count_shown", "outcome", "flagged_shown", "created_at", "updated_at"]
    list_filter = [OutcomeFilter]
    search_fields = ["turns__message"]
    fields = ["id", "visitor", "outcome", "created_at", "updated_at"]
    readonly_fields = fields
    inlines = [TurnInline]

    def get_queryset(self, request):
        return review.with_review_counts(super().get_queryset(request).select_related("user"))

    def has_add_permission(self, request):
        return False  # conversations are the shoppers'

    def has_change_permission(self, request, obj=None):
        return False  # read-only; flagging a turn has its own page

    def has_delete_permission(self, request, obj=None):
        return False  # the shopper deletes it, or ragrec_purge_conversations after the retention period

    @admin.display(description="visitor")
    def visitor(self, chat):
        return chat.user or ("session %s…" % chat.session_key[:8] if chat.session_key else "-")

    @admin.display(description="turns", ordering="turn_count")
    def turn_count_shown(self, chat):
        return chat.turn_count

    @admin.display(description="outcome")
    def outcome(self, chat):
        return review.OUTCOMES[review.outcome_of(chat)]

    @admin.display(description="flagged turns", ordering="flagged_count")
    def flagged_shown(self, chat):
        return format_html('<strong style="color:#b00">{}</strong>', chat.flagged_count) if chat.flagged_count else "0"

    # -- flagging a turn ------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view(self.flag_view)
        route = "<uuid:conversation_id>/turns/<int:number>/flag/"
        return [path(route, view, name="ragrec_django_conversation_flag")] + super().get_urls()

    def flag_view(self, request, conversation_id, number: int):
        """GET: the turn and a note field; POST ``flag`` (with the note) or ``unflag``, logged in the history."""
        if not request.user.has_perm(FLAG_PERMISSION):
            raise PermissionDenied("Flagging a turn needs the %s permission." % FLAG_PERMISSION)
        turn = get_object_or_404(
            Turn.objects.select_related("conversation"), conversation_id=conversation_id, number=number
        )
        back = reverse("admin:ragrec_django_conversation_change", args=[turn.conversation_id])
        if request.method == "POST":
            try:
                if request.POST.get("action") == "unflag":
                    review.unflag(turn)
                    done = "Removed the flag of turn %d." % number
                else:
                    note = request.POST.get("note", "")
                    review.flag(turn, request.user, note)
                    done = "Flagged turn %d%s." % (number, ": %s" % turn.flag_note if turn.flag_note else "")
            except BadQuery as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
                return HttpResponseRedirect(request.path)
            self.log_change(request, turn.conversation, done)
            self.message_user(request, done)
            return HttpResponseRedirect(back)
        context = {
            **self.admin_site.each_context(request),
            "title": "Flag turn %d" % number,
            "opts": self.model._meta,
            "turn": turn,
            "understood": review.understood(turn),
            "products": review.products_shown(turn),
            "back": back,
            "max_chars": review.FLAG_NOTE_MAX_CHARS,
        }
        return TemplateResponse(request, "admin/ragrec_django/conversation/flag.html", context)
