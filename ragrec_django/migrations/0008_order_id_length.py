# Issue 14: order ids long enough for composite ids (customer id + date, ...): 64 -> 255 characters.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ragrec_django", "0007_search_rules"),
    ]

    operations = [
        migrations.AlterField(
            model_name="interaction",
            name="order_id",
            field=models.CharField(
                blank=True,
                help_text="Basket or order the event belongs to; a basket is one visitor's order id.",
                max_length=255,
            ),
        ),
    ]
