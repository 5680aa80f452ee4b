"""Where the weights of an open_clip pretrained tag come from: the local cache first, the network only when it answers.

open_clip downloads a tag's weights from the Hugging Face Hub on every load that does not find them,
and with no network its client retries for about a minute before it fails. Here a tag is looked up in
the local caches first (no network at all when found); when it is not there and the hub cannot be
reached within a few seconds, loading fails at once with what to do instead.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from .base import EncoderError

#: Seconds to wait for a connection to the hub (or the proxy) before calling it unreachable.
PROBE_TIMEOUT = 3.0
HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"
URL_CACHE_DIR = os.path.join("~", ".cache", "clip")  # open_clip's cache for weights downloaded by URL
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")


class WeightsUnavailable(EncoderError):
    """A pretrained tag's weights are neither in the local cache nor downloadable now."""


@dataclass(frozen=True)
class PretrainedSource:
    """What to give ``open_clip.create_model``: ``pretrained`` and ``force_preprocess_cfg``."""

    pretrained: str | None
    preprocess: dict | None = None


def pretrained_source(model: str, pretrained: str | None, cache_dir: str | None = None) -> PretrainedSource:
    """The ``pretrained`` argument that loads without a network when the weights are cached.

    A file path, ``None`` or a name open_clip does not know as a tag pass through unchanged. A known tag
    becomes its cached file (with the tag's image preprocessing, which open_clip applies only to tags);
    a tag not cached stays a tag (open_clip downloads it) when the hub answers, else ``WeightsUnavailable``.
    """
    if not pretrained or os.path.isfile(pretrained):
        return PretrainedSource(pretrained)
    import open_clip

    tag = open_clip.get_pretrained_cfg(model, pretrained)
    if not tag or "file" in tag:
        return PretrainedSource(pretrained)
    preprocess = {key: tag[key] for key in PREPROCESS_KEYS if tag.get(key) is not None}
    cached, location = _cached_file(tag, cache_dir)
    if cached is not None:
        return PretrainedSource(cached, preprocess)
    if not _offline() and _reachable(location):
        return PretrainedSource(pretrained)
    raise WeightsUnavailable(unavailable_message(model, pretrained, location))


def unavailable_message(model: str, tag: str, location: str) -> str:
    return (
        "The CLIP weights %(tag)r of %(model)r are not on this machine and %(location)s cannot be reached "
        "(offline?). Two ways out: copy the weights file from a machine with internet and give its path, "
        'OPTIONS {"model": %(model)r, "checkpoint": "/path/to/open_clip_model.safetensors"} (the "pretrained" '
        "option also takes a path); or train image search on your own catalogue, no download needed: "
        "`manage.py ragrec_finetune_clip --out var/clip`, which prints the encoder setting to use."
        % {"tag": tag, "model": model, "location": location}
    )


def _cached_file(tag: dict, cache_dir: str | None) -> tuple[str | None, str]:
    """(the tag's weights file in the local cache or None, where they would be downloaded from)."""
    hub_path = tag.get("hf_hub")
    if hub_path and _has_hub():
        from huggingface_hub import constants, try_to_load_from_cache

        repo_id, filename = os.path.split(hub_path)  # "org/repo/" names the default file
        filename = filename or HF_WEIGHTS_NAME
        location = "%s/%s" % (constants.ENDPOINT, repo_id)
        for candidate in _safe_alternatives(filename) + [filename]:
            found = try_to_load_from_cache(repo_id, candidate, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return found, location
        return None, location
    url = tag.get("url", "")
    target = os.path.join(os.path.expanduser(cache_dir or URL_CACHE_DIR), os.path.basename(url))
    return (target if url and os.path.isfile(target) else None), url


def _safe_alternatives(filename: str) -> list[str]:
    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors"]
    return []


def _has_hub() -> bool:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return False
    return True


def _offline() -> bool:
    """Whether the user switched the Hugging Face client to offline mode (``HF_HUB_OFFLINE=1``)."""
    if not _has_hub():
        return False
    from huggingface_hub import constants

    return constants.is_offline_mode()


def _reachable(location: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to ``location``'s host (or the proxy for it) opens within ``timeout`` seconds.

    The look-up and connection run in a daemon thread so that a hanging DNS resolver cannot hold the caller.
    """
    parts = urlsplit(location)
    if not parts.hostname:
        return False
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    opened = threading.Event()

    def connect():
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
        except OSError:
            return
        opened.set()

    threading.Thread(target=connect, name="ragrec-hub-probe", daemon=True).start()
    return opened.wait(timeout)
