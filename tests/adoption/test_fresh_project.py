"""A brand-new shop configured only from the README walks end to end with no 5xx and no traceback (issue 21).

The host project (``host_project.py``: its own ``Product`` with ``name``/``body``/``cost``/``section``/
``picture``/``available`` and the README's adapter subclass) gets a database of its own; every step runs in
a subprocess as a shop engineer would run it: ``check --database default``, ``migrate``, products with
pictures, ``ragrec_reindex --sync``, then every API route, a template tag, the admin and photo search with
Django's test client, and encode-on-save with Celery eager (the
walk's subprocess runs with ``CELERY_TASK_ALWAYS_EAGER``).
"""

import json
import os

import pytest
from django.db import connection

from .host_project import HostProject, ragrec_settings, scratch_database

CREATE_PRODUCTS = """
import io
from django.core.files.base import ContentFile
from PIL import Image
from shop.models import Product

SECTIONS = {
    "Kitchen": [("Blue ceramic mug", "A 400 ml ceramic mug for tea and coffee."),
                ("Steel kettle", "A stainless steel kettle that boils 1.7 litres."),
                ("Oak chopping board", "A solid oak board for bread and vegetables."),
                ("Glass teapot", "A heat-proof glass teapot with a steel infuser.")],
    "Garden": [("Watering can", "A green plastic watering can, 5 litres."),
               ("Pruning shears", "Sharp steel shears for roses and shrubs."),
               ("Clay plant pot", "A terracotta pot with a drainage hole."),
               ("Garden gloves", "Thick cotton gloves for digging and weeding.")],
    "Clothing": [("Wool hat", "A warm knitted wool hat for winter."),
                 ("Cotton t-shirt", "A soft white cotton t-shirt."),
                 ("Rain jacket", "A light waterproof jacket with a hood."),
                 ("Leather belt", "A brown leather belt with a brass buckle.")],
}
COLOURS = {"Kitchen": (40, 90, 200), "Garden": (40, 160, 60), "Clothing": (200, 60, 40)}
for section, products in SECTIONS.items():
    for index, (name, body) in enumerate(products):
        buffer = io.BytesIO()
        colour = tuple(min(255, value + 12 * index) for value in COLOURS[section])
        Image.new("RGB", (48, 48), colour).save(buffer, format="PNG")
        product = Product(name=name, body=body, cost=5 + 3 * index, section=section)
        product.picture.save("%s.png" % name.lower().replace(" ", "-"), ContentFile(buffer.getvalue()), save=False)
        product.save()
print(Product.objects.count())
"""

WALK = """
import io
import json

from django.contrib.admin import site
from django.contrib.auth import get_user_model
from django.template import Context, Template
from django.test import Client
from django.urls import reverse
from PIL import Image

from shop.models import Product

products = list(Product.objects.order_by("pk"))
mug, kettle, hat = products[0], products[1], products[8]
admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
client = Client(raise_request_exception=False)
client.force_login(admin)
statuses, refusals = {}, {}


def record(label, response):
    statuses[label] = response.status_code
    if response.status_code >= 400:
        refusals[label] = response.content.decode(errors="replace")[:300]


for product, event in ((mug, "view"), (kettle, "view"), (hat, "purchase"), (mug, "purchase")):
    record("events " + event, client.post("/api/recommend/events/", {"event": event, "item": str(product.pk),
                                         "order_id": "o1"}, content_type="application/json"))
for label, url in [
    ("similar", "/api/recommend/items/%d/similar/?k=4" % mug.pk),
    ("bought-together", "/api/recommend/items/%d/bought-together/" % mug.pk),
    ("basket", "/api/recommend/basket/bought-together/?items=%d,%d" % (mug.pk, hat.pk)),
    ("search", "/api/recommend/search/?q=ceramic+mug"),
    ("search typo", "/api/recommend/search/?q=keramic+mugg"),
    ("suggest", "/api/recommend/search/suggest/?q=mu"),
    ("for-you", "/api/recommend/for-you/"),
    ("trending", "/api/recommend/trending/"),
    ("recently-viewed", "/api/recommend/recently-viewed/"),
    ("buy-again", "/api/recommend/buy-again/"),
    ("assistant", "/api/recommend/assistant/?q=a+warm+hat+under+40"),
    ("schema", "/api/recommend/schema/"),
    ("docs", "/api/recommend/docs/"),
    ("browsable similar", "/api/recommend/items/%d/similar/" % mug.pk),
]:
    headers = {"HTTP_ACCEPT": "text/html"} if label.startswith("browsable") else {}
    record(label, client.get(url, **headers))

similar = client.get("/api/recommend/items/%d/similar/?k=4" % mug.pk).json()
same_section = [row for row in similar["results"] if Product.objects.get(pk=row["id"]).section == "Kitchen"]

buffer = io.BytesIO()
Image.new("RGB", (48, 48), (40, 90, 200)).save(buffer, format="PNG")
buffer.name = "photo.png"
buffer.seek(0)
record("photo search", client.post("/api/recommend/search/photo/", {"image": buffer, "k": 3}))

html = Template("{% load ragrec %}{% ragrec_similar product k=4 as s %}{% ragrec_render s %}").render(
    Context({"product": mug})
)

for model in site._registry:
    if model._meta.app_label == "ragrec_django":
        name = "admin " + model._meta.model_name
        record(name, client.get(reverse("admin:ragrec_django_%s_changelist" % model._meta.model_name)))
record("admin experiments", client.get("/admin/ragrec_django/experiments/"))
record("admin index", client.get("/admin/"))

# encode on save, Celery eager (this subprocess's environment): the new product has its embeddings at once
from django.core.files.base import ContentFile
from ragrec_django.models import Embedding

enamel = Product(name="Enamel mug", body="A white enamel camping mug.", cost=7, section="Kitchen")
enamel.picture.save("enamel.png", ContentFile(buffer.getvalue()), save=False)
enamel.save()
encoded = sorted(Embedding.objects.filter(item__key=str(enamel.pk)).values_list("generation__space", flat=True))

print(json.dumps({"encoded_on_save": encoded, "statuses": statuses, "refusals": refusals, "similar": len(similar["results"]), "same_section": len(same_section),
                  "rendered": [p.name for p in products if p.name in html]}))
"""


@pytest.fixture
def fresh_project(django_db_setup, django_db_blocker, tmp_path, tiny_clip):
    with django_db_blocker.unblock():
        settings_dict = dict(connection.settings_dict)
    with scratch_database(settings_dict, "ragrec_fresh_project_%d" % os.getpid()) as url:
        ragrec = ragrec_settings(
            {
                "minilm": {"BACKEND": "ragrec_django.ml.text.TransformerTextEncoder", "OPTIONS": {"device": "cpu"}},
                "clip": {"BACKEND": "ragrec_django.ml.clip.OpenClipEncoder", "OPTIONS": {**tiny_clip, "device": "cpu"}},
            },
            {
                "text": {"ENCODER": "minilm", "MODALITY": "text"},
                "image": {"ENCODER": "clip", "MODALITY": "image"},
                "clip-text": {"ENCODER": "clip", "MODALITY": "text"},
            },
        )
        yield HostProject(tmp_path / "site", url, ragrec)


def run_step(project, label, result, stderrs):
    stderrs[label] = result.stderr
    assert result.returncode == 0, "%s failed:\n%s\n%s" % (label, result.stdout, result.stderr)
    return result.stdout


@pytest.mark.requires_postgres
def test_a_fresh_project_walks_from_check_to_encode_on_save(fresh_project):
    project, stderrs = fresh_project, {}
    run_step(project, "makemigrations", project.manage("makemigrations", "shop"), stderrs)
    run_step(project, "check", project.manage("check", "--database", "default"), stderrs)
    run_step(project, "migrate", project.manage("migrate", "--no-input"), stderrs)
    assert run_step(project, "products", project.python(CREATE_PRODUCTS), stderrs).split()[-1] == "12"
    run_step(project, "reindex", project.manage("ragrec_reindex", "--sync"), stderrs)

    walk = run_step(project, "walk", project.python(WALK, CELERY_TASK_ALWAYS_EAGER="1"), stderrs)
    walk = json.loads(walk.splitlines()[-1])
    failures = {label: status for label, status in walk["statuses"].items() if status >= 500}
    assert failures == {}, walk["statuses"]
    assert walk["refusals"] == {}
    assert walk["statuses"]["photo search"] == 200 and walk["statuses"]["schema"] == 200
    assert walk["statuses"]["admin experiments"] == 200 and walk["statuses"]["admin item"] == 200
    assert walk["similar"] == 4 and walk["same_section"] >= 2
    assert walk["rendered"], "the template tag rendered no product"

    assert walk["encoded_on_save"] == ["clip-text", "image", "text"]

    tracebacks = [label for label, stderr in stderrs.items() if "Traceback" in stderr]
    assert tracebacks == [], {label: stderrs[label] for label in tracebacks}
