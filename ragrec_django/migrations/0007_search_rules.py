from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ragrec_django", "0006_conversations"),
    ]

    operations = [
        migrations.CreateModel(
            name="SearchRule",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "query",
                    models.CharField(
                        help_text='The query, e.g. "jumper" (stored normalised).', max_length=200, unique=True
                    ),
                ),
                (
                    "redirect_url",
                    models.CharField(
                        blank=True,
                        help_text='Send the shopper to this page: a path of this site ("/category/mugs/") or an http(s) URL.',
                        max_length=500,
                    ),
                ),
                (
                    "rules",
                    models.JSONField(
                        blank=True,
                        default=dict,
                        help_text='Pins and boosts among the results, as serving rules: {"pin": [[item id, position from 0]], "boost": {"item id": 0.05}, "boost_categories": {"Sweaters": 0.05}, "hide": [item id, ...]}.',
                    ),
                ),
                ("is_active", models.BooleanField(default=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["query"],
            },
        ),
    ]
