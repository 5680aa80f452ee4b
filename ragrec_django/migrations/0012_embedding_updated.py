# Which items of a generation were written since a time, by an index-only scan: each web process asks once per
# RAGREC["HNSW"]["EXACT_CACHE_SECONDS"] and forgets those rows of its vector cache (storage/vector_cache.py).
# Built CONCURRENTLY: the encoding workers keep writing embeddings while it builds.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("ragrec_django", "0011_item_category_ids"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="embedding",
            index=models.Index(fields=["generation", "updated_at"], include=["item"], name="ragrec_embedding_updated"),
        ),
    ]
