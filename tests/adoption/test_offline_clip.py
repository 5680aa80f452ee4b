"""The README's CLIP configuration offline fails at once, with the two ways out, and leaves nothing half-made (issue 21, item 1).

The hub is made unreachable without ``HF_HUB_OFFLINE`` (the code must not need the user to set it): its
address points at a closed local port, and the Hugging Face cache is an empty folder.
"""

import os
import time

import pytest
from django.db import connection

from ragrec_django.ml import clip_weights
from ragrec_django.ml.clip import OpenClipEncoder

from .host_project import HostProject, ragrec_settings, scratch_database

README_CLIP = {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}
UNREACHABLE_HUB = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once
HUB_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE_HUB)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "hf-cache"


def assert_names_both_ways_out(message):
    assert "laion2b_s34b_b79k" in message and "cannot be reached" in message
    assert '"checkpoint": "/path/to/open_clip_model.safetensors"' in message
    assert "manage.py ragrec_finetune_clip" in message


def test_a_tag_not_cached_with_the_hub_unreachable_fails_at_once(no_hub):
    import open_clip  # noqa: F401  (imported first: torch's import is not what is timed)

    encoder = OpenClipEncoder(**README_CLIP, device="cpu")
    started = time.monotonic()
    with pytest.raises(clip_weights.WeightsUnavailable) as raised:
        encoder.load()
    assert time.monotonic() - started < 10
    assert_names_both_ways_out(str(raised.value))


def test_a_cached_tag_loads_from_the_cache_with_the_tags_preprocessing(no_hub):
    snapshot = no_hub / ("models--" + HUB_REPO.replace("/", "--")) / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    (no_hub / ("models--" + HUB_REPO.replace("/", "--")) / "refs").mkdir()
    (no_hub / ("models--" + HUB_REPO.replace("/", "--")) / "refs" / "main").write_text("abc123")
    source = clip_weights.pretrained_source("ViT-B-32", "laion2b_s34b_b79k")
    assert source.pretrained == str(snapshot / "open_clip_model.safetensors")
    assert source.preprocess["interpolation"] == "bicubic" and source.preprocess["resize_mode"] == "shortest"


def test_paths_and_unknown_names_pass_through(tiny_clip):
    assert (
        clip_weights.pretrained_source("ragrec-tiny-clip", tiny_clip["pretrained"]).pretrained
        == tiny_clip["pretrained"]
    )
    assert clip_weights.pretrained_source("ViT-B-32", None).pretrained is None


@pytest.fixture
def offline_project(django_db_setup, django_db_blocker, tmp_path):
    with django_db_blocker.unblock():
        settings_dict = dict(connection.settings_dict)
    with scratch_database(settings_dict, "ragrec_offline_clip_%d" % os.getpid()) as url:
        ragrec = ragrec_settings(
            {"clip": {"BACKEND": "ragrec_django.ml.clip.OpenClipEncoder", "OPTIONS": {**README_CLIP, "device": "cpu"}}},
            {"image": {"ENCODER": "clip", "MODALITY": "image"}},
            AUTO_ENCODE=False,
        )
        project = HostProject(tmp_path / "site", url, ragrec)
        hub = dict(HF_ENDPOINT=UNREACHABLE_HUB, HF_HUB_CACHE=str(tmp_path / "hf-cache"), HF_HUB_OFFLINE="0")
        for step in (("makemigrations", "shop"), ("migrate", "--no-input")):
            result = project.manage(*step, **hub)
            assert result.returncode == 0, result.stderr
        yield project, hub


def test_reindex_sync_stops_with_the_message_and_leaves_no_generation(offline_project):
    project, hub = offline_project
    made = project.python(
        "from shop.models import Product\nProduct.objects.create(name='Mug', body='A ceramic mug', cost=9, section='Kitchen')",
        **hub,
    )
    assert made.returncode == 0, made.stderr
    started = time.monotonic()
    result = project.manage("ragrec_reindex", "--sync", **hub)
    assert time.monotonic() - started < 60  # the process start included; the hub is not retried
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert_names_both_ways_out(result.stderr)
    rows = project.python(
        "from ragrec_django.models import SpaceGeneration\nprint(SpaceGeneration.objects.count())", **hub
    )
    assert rows.returncode == 0, rows.stderr
    assert rows.stdout.strip() == "0"
