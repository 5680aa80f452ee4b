# Staff can flag a bad turn of the assistant's conversations in the admin (issue 15): when, by whom, and a note.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("ragrec_django", "0009_ranker_signals"),
    ]

    operations = [
        migrations.AddField(
            model_name="turn",
            name="flag_note",
            field=models.TextField(blank=True, help_text="What is wrong with the turn (optional)."),
        ),
        migrations.AddField(
            model_name="turn",
            name="flagged_at",
            field=models.DateTimeField(blank=True, help_text="When staff flagged the turn as a bad one.", null=True),
        ),
        migrations.AddField(
            model_name="turn",
            name="flagged_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
