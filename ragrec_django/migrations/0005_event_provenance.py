# Issue 19 (hardening): idempotency keys per visitor with the event's fingerprint, one click per
# (impression, item), the provenance popularity needs (origin, verified), and an audit trail of
# description drafts that outlives the drafts.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ragrec_django", "0004_search"),
    ]

    operations = [
        migrations.AddField(
            model_name="interaction",
            name="idempotency_scope",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                max_length=80,
                help_text="Whose key idempotency_key is: user:<id> or session:<key> (keys are unique per visitor).",
            ),
        ),
        migrations.AddField(
            model_name="interaction",
            name="payload_hash",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                max_length=64,
                help_text="sha256 of the event as the client sent it with its idempotency key (a replay must match).",
            ),
        ),
        migrations.AddField(
            model_name="interaction",
            name="origin",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                max_length=16,
                help_text="Keyed hash of the client address that reported it (empty: not from a request); popularity "
                "counts a capped number of visitors per origin.",
            ),
        ),
        migrations.AddField(
            model_name="interaction",
            name="verified",
            field=models.BooleanField(
                db_default=True,
                default=True,
                help_text="Counts toward trending and co-purchases: a signed-in user, a session the server issued, or "
                "recorded by the server itself. False: an API client's session key the server never issued.",
            ),
        ),
        # Keys stored before belong to the visitor of their event; their fingerprint is unknown (empty), so
        # a retry of one is taken as a replay.
        migrations.RunSQL(
            "UPDATE ragrec_django_interaction SET idempotency_scope = CASE WHEN user_id IS NOT NULL"
            " THEN 'user:' || user_id::text ELSE 'session:' || session_key END WHERE idempotency_key IS NOT NULL",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="interaction",
            name="idempotency_key",
            field=models.CharField(blank=True, max_length=128, null=True),
        ),
        # Replayed clicks of one (impression, item) stay as events but no longer count for the impression.
        migrations.RunSQL(
            "UPDATE ragrec_django_interaction AS later SET impression_id = NULL"
            " FROM ragrec_django_interaction AS first"
            " WHERE later.event = 'click' AND first.event = 'click' AND later.impression_id = first.impression_id"
            " AND later.item_id = first.item_id AND later.id > first.id",
            migrations.RunSQL.noop,
        ),
        migrations.AddConstraint(
            model_name="interaction",
            constraint=models.UniqueConstraint(
                condition=models.Q(("idempotency_key__isnull", False)),
                fields=("idempotency_scope", "idempotency_key"),
                name="ragrec_event_idempotency",
            ),
        ),
        migrations.AddConstraint(
            model_name="interaction",
            constraint=models.UniqueConstraint(
                condition=models.Q(("event", "click"), ("impression__isnull", False)),
                fields=("impression", "item"),
                name="ragrec_event_one_click",
            ),
        ),
        migrations.AddField(
            model_name="descriptionevent",
            name="item_key",
            field=models.CharField(
                blank=True, default="", help_text="The draft's item (kept with the event).", max_length=64
            ),
        ),
        migrations.RunSQL(
            "UPDATE ragrec_django_descriptionevent AS e SET item_key = i.key"
            " FROM ragrec_django_descriptiondraft AS d JOIN ragrec_django_item AS i ON i.id = d.item_id"
            " WHERE d.id = e.draft_id",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="descriptionevent",
            name="draft",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="events",
                to="ragrec_django.descriptiondraft",
                help_text="Empty once the draft is deleted: the audit trail outlives it (append-only).",
            ),
        ),
    ]
