"""Encoders, embedding spaces and generators built from ``RAGREC`` settings, once per process.

Building an encoder only imports its class and stores its options: weights
load on first use, so a Celery prefork parent never holds a model. A process
that serves requests is set up for query encoding once, on its first request
or from the web server's post-fork hook (``prepare_serving_process``).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .conf import import_from_setting, ragrec_settings
from .ml.base import MODALITIES, EncoderError
from .ml.devices import limit_cpu_threads
from .ml.generation import GenerationError

logger = logging.getLogger(__name__)

WARM_UP_QUERY = "warm-up query"

_lock = threading.Lock()
_encoders: dict[str, object] = {}
_generators: dict[str, object] = {}
_serving_lock = threading.Lock()
_serving_pid: int | None = None


@dataclass(frozen=True)
class SpaceConfig:
    """A configured embedding space: one encoder alias applied to one modality."""

    name: str
    encoder_alias: str
    modality: str
    #: The ANN index of the space's new generations: "halfvec" (HNSW on the vectors) or "binary"
    #: (HNSW on their sign bits, re-ranked exactly; storage.ann).
    index: str = "halfvec"
    #: Candidates a binary index returns for exact re-ranking (None: RAGREC["HNSW"]["RERANK_DEPTH"]).
    rerank_depth: int | None = None

    @property
    def encoder(self):
        return get_encoder(self.encoder_alias)


def encoder_configs() -> dict[str, dict]:
    configs = ragrec_settings.ENCODERS
    if not isinstance(configs, dict):
        raise ImproperlyConfigured('RAGREC["ENCODERS"] must be a dict of alias -> {"BACKEND", "OPTIONS"}.')
    for alias, config in configs.items():
        if not isinstance(config, dict) or "BACKEND" not in config:
            raise ImproperlyConfigured('RAGREC["ENCODERS"][%r] needs a "BACKEND" dotted path.' % alias)
        unknown = set(config) - {"BACKEND", "OPTIONS"}
        if unknown:
            raise ImproperlyConfigured(
                'Unknown key(s) %s in RAGREC["ENCODERS"][%r]; allowed: BACKEND, OPTIONS.' % (sorted(unknown), alias)
            )
    return configs


def get_encoder(alias: str):
    """The encoder instance for ``alias`` (built once per process, weights not loaded)."""
    encoder = _encoders.get(alias)
    if encoder is not None:
        return encoder
    configs = encoder_configs()
    if alias not in configs:
        raise ImproperlyConfigured(
            "No encoder %r in RAGREC['ENCODERS'] (configured: %s)." % (alias, ", ".join(sorted(configs)) or "none")
        )
    with _lock:
        if alias not in _encoders:
            config = configs[alias]
            backend = import_from_setting(config["BACKEND"], "ENCODERS.%s.BACKEND" % alias)
            try:
                _encoders[alias] = backend(**config.get("OPTIONS", {}))
            except (TypeError, EncoderError) as exc:
                raise ImproperlyConfigured("Bad OPTIONS for encoder %r: %s" % (alias, exc)) from exc
        return _encoders[alias]


def get_spaces() -> dict[str, SpaceConfig]:
    """All configured spaces by name, validated against the encoder aliases."""
    raw = ragrec_settings.SPACES
    if not isinstance(raw, dict):
        raise ImproperlyConfigured('RAGREC["SPACES"] must be a dict of name -> {"ENCODER", "MODALITY"}.')
    aliases = encoder_configs()
    spaces = {}
    for name, config in raw.items():
        if (
            not isinstance(config, dict)
            or not {"ENCODER", "MODALITY"} <= set(config)
            or set(config) - {"ENCODER", "MODALITY", *SPACE_INDEX_KEYS}
        ):
            raise ImproperlyConfigured(
                'RAGREC["SPACES"][%r] must be {"ENCODER": alias, "MODALITY": ...} (optional: "INDEX", "RERANK_DEPTH").'
                % name
            )
        if config["ENCODER"] not in aliases:
            raise ImproperlyConfigured(
                'RAGREC["SPACES"][%r] uses encoder %r, which is not in RAGREC["ENCODERS"].' % (name, config["ENCODER"])
            )
        if config["MODALITY"] not in MODALITIES:
            raise ImproperlyConfigured(
                'RAGREC["SPACES"][%r]["MODALITY"] must be one of %s.' % (name, ", ".join(MODALITIES))
            )
        spaces[name] = SpaceConfig(
            name=name,
            encoder_alias=config["ENCODER"],
            modality=config["MODALITY"],
            index=_space_index(name, config.get("INDEX", "halfvec")),
            rerank_depth=_rerank_depth('RAGREC["SPACES"][%r]["RERANK_DEPTH"]' % name, config.get("RERANK_DEPTH")),
        )
    _rerank_depth('RAGREC["HNSW"]["RERANK_DEPTH"]', ragrec_settings.HNSW.get("RERANK_DEPTH"))
    _check_exact_cache(ragrec_settings.HNSW)
    return spaces


def _check_exact_cache(hnsw: dict) -> None:
    """``HNSW["EXACT_CACHE_ROWS"]``, ``HNSW["SMALL_CATEGORY_ROWS"]`` and ``HNSW["QUERY_CATEGORIES"]`` integers >= 0 and
    ``HNSW["EXACT_CACHE_SECONDS"]`` a number > 0."""
    for name in ("EXACT_CACHE_ROWS", "SMALL_CATEGORY_ROWS", "QUERY_CATEGORIES"):
        rows = hnsw.get(name, 0)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ImproperlyConfigured('RAGREC["HNSW"]["%s"] must be an integer >= 0 (0: off), not %r.' % (name, rows))
    seconds = hnsw.get("EXACT_CACHE_SECONDS", 300)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ImproperlyConfigured('RAGREC["HNSW"]["EXACT_CACHE_SECONDS"] must be a number > 0, not %r.' % (seconds,))


#: Optional keys of a space: its ANN index type and a binary index's re-rank depth.
SPACE_INDEX_KEYS = ("INDEX", "RERANK_DEPTH")
SPACE_INDEXES = ("halfvec", "binary")
#: pgvector's hnsw.ef_search range: a binary index scan is asked for RERANK_DEPTH rows at once.
RERANK_DEPTH_RANGE = (10, 1000)


def _space_index(name: str, index) -> str:
    if index not in SPACE_INDEXES:
        raise ImproperlyConfigured(
            'RAGREC["SPACES"][%r]["INDEX"] must be one of %s, not %r.' % (name, ", ".join(SPACE_INDEXES), index)
        )
    return index


def _rerank_depth(where: str, depth) -> int | None:
    low, high = RERANK_DEPTH_RANGE
    if depth is None:
        return None
    if isinstance(depth, bool) or not isinstance(depth, int) or not low <= depth <= high:
        raise ImproperlyConfigured("%s must be an integer from %d to %d, not %r." % (where, low, high, depth))
    return depth


def get_space(name: str) -> SpaceConfig:
    spaces = get_spaces()
    if name not in spaces:
        raise ImproperlyConfigured("No embedding space %r (configured: %s)." % (name, ", ".join(sorted(spaces))))
    return spaces[name]


def get_generator(alias: str):
    """The text generator for ``alias`` in RAGREC["GENERATORS"] (built once per process, nothing loaded)."""
    generator = _generators.get(alias)
    if generator is not None:
        return generator
    configs = ragrec_settings.GENERATORS
    if alias not in configs or "BACKEND" not in configs[alias]:
        raise ImproperlyConfigured(
            "No generator %r with a BACKEND in RAGREC['GENERATORS'] (configured: %s)."
            % (alias, ", ".join(sorted(configs)))
        )
    with _lock:
        if alias not in _generators:
            backend = import_from_setting(configs[alias]["BACKEND"], "GENERATORS.%s.BACKEND" % alias)
            try:
                _generators[alias] = backend(**configs[alias].get("OPTIONS", {}))
            except (TypeError, GenerationError) as exc:
                raise ImproperlyConfigured("Bad OPTIONS for generator %r: %s" % (alias, exc)) from exc
        return _generators[alias]


def prepare_serving_process(*, warm: bool = False) -> None:
    """Set up this process to serve requests: torch CPU threads to ``RAGREC["QUERY_THREADS"]``, once per process.

    Runs on the first request a process serves (``request_started``), so after a pre-fork server
    forked it; a server hook that runs in each worker before its first request (gunicorn's
    ``post_worker_init``) may call it earlier. ``warm=True`` also loads every space's encoder and
    encodes one query, so the first searches of the process do not wait for the models to load
    (``services.serving.prepare_web_process`` also fills the search caches and freezes the heap).
    """
    global _serving_pid
    if _serving_pid != os.getpid():
        with _serving_lock:
            if _serving_pid != os.getpid():
                try:
                    threads = limit_cpu_threads(ragrec_settings.QUERY_THREADS)
                except ValueError as exc:
                    raise ImproperlyConfigured('RAGREC["QUERY_THREADS"]: %s' % exc) from exc
                _serving_pid = os.getpid()
                logger.debug("Serving process %d: torch CPU threads %s.", _serving_pid, threads or "unchanged")
    if warm:
        warm_query_encoders()


def warm_query_encoders() -> None:
    """Load the encoder of every configured space and encode one text query with each (errors are logged)."""
    aliases = {space.encoder_alias for space in get_spaces().values()}
    for alias in sorted(aliases):
        try:
            encoder = get_encoder(alias)
            if hasattr(encoder, "encode_texts"):
                encoder.encode_texts([WARM_UP_QUERY])
        except Exception:  # noqa: BLE001 - a model that fails to load fails its requests later, with their error
            logger.exception("Could not warm up encoder %r.", alias)


def on_request_started(sender, **kwargs) -> None:
    """``request_started`` receiver: prepare the serving process (the test client is no server: skipped)."""
    if getattr(sender, "__module__", "") != "django.test.client":
        prepare_serving_process()


def clear() -> None:
    """Forget built encoders and generators (settings changed)."""
    with _lock:
        _encoders.clear()
        _generators.clear()


def _clear_on_ragrec_change(*, setting: str, **kwargs) -> None:
    """Encoders, spaces and generators are built from RAGREC: drop what was built when it changes."""
    if setting == "RAGREC":
        clear()


setting_changed.connect(_clear_on_ragrec_change)
