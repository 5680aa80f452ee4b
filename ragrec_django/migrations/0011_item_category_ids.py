# The ids of a category's items by an index-only scan: the exact ANN scan under a selective filter reads them
# once per search (issues 18/15/20).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ragrec_django", "0010_turn_flag"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="item",
            index=models.Index(
                fields=["category"], include=["id", "is_eligible", "price", "in_stock"], name="ragrec_item_category_ids"
            ),
        ),
    ]
