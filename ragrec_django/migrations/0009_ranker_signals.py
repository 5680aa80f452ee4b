# Issue 14: the learned ranker's shared signals, materialised (services.ranker.refresh_signals) so that
# serving reads them by primary key instead of aggregating the event table per request.

import django.contrib.postgres.fields
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ragrec_django", "0008_order_id_length"),
    ]

    operations = [
        migrations.CreateModel(
            name="RankerSignalSnapshot",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "as_of",
                    models.DateTimeField(help_text="The signals count the events strictly before this instant."),
                ),
                ("built_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("seconds", models.FloatField(default=0.0, help_text="How long the refresh took.")),
                (
                    "windows",
                    models.JSONField(
                        default=list, help_text="Popularity windows (days) of RankerItemSignals.popularity."
                    ),
                ),
                (
                    "orders_per_item",
                    models.PositiveIntegerField(help_text="Each item's latest orders its partners are counted in."),
                ),
                (
                    "max_per_source",
                    models.IntegerField(
                        blank=True, null=True, help_text="Orders one origin counts per item (None: all)."
                    ),
                ),
                ("popular_days", models.FloatField()),
                (
                    "popular",
                    models.JSONField(default=list, help_text="[[item id, orders], ...] best first, over popular_days."),
                ),
                ("items", models.PositiveIntegerField(default=0, help_text="Item rows written.")),
            ],
        ),
        migrations.CreateModel(
            name="RankerItemSignals",
            fields=[
                (
                    "item",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="ragrec_django.item",
                    ),
                ),
                (
                    "popularity",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.IntegerField(), default=list, size=None
                    ),
                ),
                ("first_seen", models.DateTimeField(blank=True, null=True)),
                ("orders_read", models.IntegerField(default=0)),
                ("partners", models.BinaryField(default=b"")),
                ("partner_counts", models.BinaryField(default=b"")),
            ],
        ),
    ]
