"""Celery queues per workload (ragrec_django.queues): routing by space modality, and system checks ragrec.E017 and
ragrec.W006 (an encode batch that outlasts the broker's visibility timeout).

The real workers consuming these queues are in tests/services/encoding/test_worker_topology.py."""

import pytest
from celery import current_app
from django.core import checks

from ragrec_django import queues

SPACES = {
    "text": {"ENCODER": "minilm", "MODALITY": "text"},
    "image": {"ENCODER": "clip", "MODALITY": "image"},
    "clip-text": {"ENCODER": "clip", "MODALITY": "text"},
}
CLIP = {"BACKEND": "ragrec_django.ml.clip.OpenClipEncoder", "OPTIONS": {"model": "ViT-B-32", "pretrained": None}}


@pytest.fixture
def topology(settings):
    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {**settings.RAGREC["ENCODERS"], "clip": CLIP},
        "SPACES": SPACES,
        "TASK_QUEUES": {},
    }
    return settings


@pytest.fixture
def broker(monkeypatch):
    """Set the Celery app's broker URL and transport options for a test (restored after it).

    Celery reads the URL from ``CELERY_BROKER_URL`` in the environment before its configuration.
    """
    conf = current_app.conf
    saved = conf.broker_transport_options

    def use(url, **options):
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        conf.broker_transport_options = options

    yield use
    conf.broker_transport_options = saved


def ragrec_messages():
    return [m for m in checks.run_checks() if m.id.startswith("ragrec.")]


def test_encode_tasks_go_to_the_queue_of_their_space_modality(topology):
    assert [queues.encode_queue(space) for space in SPACES] == ["gpu-text", "gpu-image", "gpu-text"]
    route = queues.route_task
    assert route("ragrec_django.tasks.encode_items_task", ("image", ["1"], False), {}, {}) == {"queue": "gpu-image"}
    assert route("ragrec_django.tasks.encode_items_task", (), {"space": "clip-text", "pks": []}, {}) == {
        "queue": "gpu-text"
    }
    assert route("ragrec_django.tasks.encode_items_task", ("nope", [], False), {}, {}) == {"queue": "cpu"}
    assert route("ragrec_django.tasks.finetune_clip_task", (), {}, {}) == {"queue": "gpu-image"}
    assert route("ragrec_django.tasks.train_ranker_task", (), {}, {}) == {"queue": "cpu"}
    assert route("ragrec_django.tasks.generate_descriptions_task", (1, []), {}, {}) == {"queue": "cpu"}
    assert route("shop.tasks.send_mail", (), {}, {}) is None  # the host's own tasks: not ours to route


def test_queue_names_are_configurable_and_generation_keeps_its_own_queue(topology):
    topology.RAGREC = {
        **topology.RAGREC,
        "TASK_QUEUES": {"image": "a100-image", "cpu": "default"},
        "GENERATION_QUEUE": "llm",
    }
    assert [queues.encode_queue(space) for space in SPACES] == ["gpu-text", "a100-image", "gpu-text"]
    assert queues.route_task("ragrec_django.tasks.generate_descriptions_task", (1, []), {}, {}) == {"queue": "llm"}
    assert queues.route_task("ragrec_django.tasks.train_ranker_task", (), {}, {}) == {"queue": "default"}


def test_without_task_queues_everything_stays_where_it_was(settings):
    assert settings.RAGREC.get("TASK_QUEUES") is None
    assert queues.encode_queue("text") is None
    assert queues.route_task("ragrec_django.tasks.encode_items_task", ("text", [], False), {}, {}) is None
    settings.RAGREC = {**settings.RAGREC, "ENCODE_QUEUE": "gpu"}
    assert queues.encode_queue("text") == "gpu"


@pytest.mark.parametrize(
    "override",
    [
        {"TASK_QUEUES": ["gpu-image"]},
        {"TASK_QUEUES": {"audio": "gpu-audio"}},
        {"TASK_QUEUES": {"image": ""}},
        {"ENCODE_ITEMS_PER_SECOND": {"image": 0}},
        {"ENCODE_ITEMS_PER_SECOND": {"text": "fast"}},
        {"ENCODE_ITEMS_PER_SECOND": [20, 5]},
    ],
)
def test_invalid_queue_settings_are_E017(topology, override):
    topology.RAGREC = {**topology.RAGREC, **override}
    assert [m.id for m in ragrec_messages()] == ["ragrec.E017"]


def test_W006_warns_when_a_batch_outlasts_the_visibility_timeout(topology, broker):
    # 256 items per chunk (the default) at 5 images/s take 51 s; text at 20/s, 12.8 s.
    broker("redis://127.0.0.1:6379/0", visibility_timeout=30)
    (warning,) = ragrec_messages()
    assert warning.id == "ragrec.W006"
    assert "'image' (image) is expected to take 51 s" in warning.msg and "visibility_timeout of 30 s" in warning.msg
    assert "(75 items take about half the timeout" in warning.hint

    broker("redis://127.0.0.1:6379/0", visibility_timeout=3600)
    assert ragrec_messages() == []
    broker("redis://127.0.0.1:6379/0")  # kombu's default for Redis: one hour
    assert ragrec_messages() == []
    broker("sqs://", visibility_timeout=10)  # both modalities
    messages = ragrec_messages()
    assert len(messages) == 2 and {"(image)" in m.msg for m in messages} == {True, False}
    broker("amqp://guest@localhost//")  # RabbitMQ redelivers on a dead connection, not on a timer
    topology.RAGREC = {**topology.RAGREC, "ENCODE_CHUNK_SIZE": 100_000}
    assert ragrec_messages() == []


def test_the_rates_are_per_modality_and_merged_with_the_defaults(topology, broker):
    topology.RAGREC = {**topology.RAGREC, "ENCODE_ITEMS_PER_SECOND": {"image": 400}}  # a GPU: text keeps 20/s
    broker("redis://127.0.0.1:6379/0", visibility_timeout=10)
    (warning,) = ragrec_messages()
    assert "'text', 'clip-text' (text)" in warning.msg
