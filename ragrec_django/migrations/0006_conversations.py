# Issue 15: the conversational assistant's conversations and their turns.

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ragrec_django", "0005_event_provenance"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Conversation",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("session_key", models.CharField(blank=True, max_length=64)),
                (
                    "state",
                    models.JSONField(
                        blank=True, default=dict, help_text="ragrec_django.generation.dialogue.DialogueState."
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True, db_index=True)),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-updated_at"],
                "indexes": [models.Index(fields=["user", "session_key"], name="ragrec_conversation_visitor")],
            },
        ),
        migrations.CreateModel(
            name="Turn",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("number", models.PositiveIntegerField()),
                ("message", models.TextField(blank=True)),
                (
                    "feedback",
                    models.JSONField(blank=True, default=dict, help_text='{"item": key, "action": "like"...}, if any.'),
                ),
                ("answer", models.TextField(blank=True)),
                ("question", models.TextField(blank=True)),
                ("item_keys", models.JSONField(blank=True, default=list, help_text="The products shown, in order.")),
                ("state", models.JSONField(blank=True, default=dict, help_text="The state after this turn.")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "conversation",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="turns",
                        to="ragrec_django.conversation",
                    ),
                ),
            ],
            options={
                "ordering": ["conversation", "number"],
                "constraints": [
                    models.UniqueConstraint(fields=("conversation", "number"), name="ragrec_turn_unique_number")
                ],
            },
        ),
    ]
