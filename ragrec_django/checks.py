"""System checks with stable ids for misconfiguration.

The settings that ``conf.py`` validates (``VALIDATORS``, ``validate_serving_configs``) are reported here
with the validators' own messages; the services read the checked values.

ragrec.E001  settings.RAGREC is invalid (not a dict, unknown keys)
ragrec.E002  RAGREC["ITEM_MODEL"] missing or not an installed model
ragrec.E003  RAGREC["ADAPTER"] unimportable or not an ItemAdapter subclass
ragrec.E004  an encoder's BACKEND unimportable or its OPTIONS rejected
ragrec.E005  RAGREC["SPACES"] invalid (unknown encoder alias, modality, shape)
ragrec.E006  an encoder cannot encode the modality its space asks for
ragrec.E007  the default database is not PostgreSQL
ragrec.E008  the pgvector extension is missing from the database      (database check)
ragrec.E009  a space's active generation has another dimension than its encoder (database check)
ragrec.E010  a generator's BACKEND unimportable, its OPTIONS rejected, or an unknown generator alias named
ragrec.W001  a space's active generation was built by another encoder version (database check)
ragrec.E011  RAGREC["EXPERIMENTS"] invalid (shape, variants, weights, a recommender in two experiments)
ragrec.E012  RAGREC["SERVING_CONFIGS"] invalid (not a dict of name -> rules, or an entry's rules rejected)
ragrec.E013  RAGREC["FOR_YOU_WEIGHTS"], ["SIMILAR_WEIGHTS"] or ["SEARCH_WEIGHTS"] invalid (unknown list or retriever,
             a weight that is not a number >= 0, no "for you" weight above 0)
ragrec.E014  RAGREC["API_THROTTLE_RATES"] invalid (not a dict, a rate other than "<n>/<s|min|hour|day>" or None)
ragrec.W002  an experiment's variant names a serving configuration that exists neither in settings nor in the admin
             (database check; that variant's visitors are served "default" meanwhile)
ragrec.W003  the settings trust a proxy's headers (SECURE_PROXY_SSL_HEADER, USE_X_FORWARDED_HOST or _PORT) but
             REST_FRAMEWORK["NUM_PROXIES"] is unset: the API's throttles and popularity caps see the proxy's address
             for every client (they never trust X-Forwarded-For without a proxy count)
ragrec.W004  RAGREC["AUTO_ENCODE"] is on but the celery package is not installed (saved items are not re-encoded)
ragrec.W005  RAGREC["AUTO_ENCODE"] is on but no Celery broker is configured (Celery would use its default
             amqp://localhost; saved items are recorded for ``ragrec_reindex --stale`` instead)
ragrec.E015  the URLs include ragrec_django.api.urls but "rest_framework" is not in INSTALLED_APPS, or
             REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] is not drf-spectacular's AutoSchema
ragrec.E016  RAGREC["READ_DATABASE"] invalid (not an alias or a list of aliases, an alias not in DATABASES or not
             PostgreSQL) or RAGREC["READ_DATABASE_MAX_LAG_SECONDS"] not a number > 0 (docs/scaling.md)
ragrec.E018  RAGREC["SEARCH_TOKENISER"] invalid (not "none", "bigram" or "jieba", or "jieba" without the jieba package)
ragrec.E019  RAGREC["SEARCH_LANGUAGES"] invalid (not a dict of language code -> text-search configuration name or
             {"CONFIG": ..., "TOKENISER": ...}, an unknown key or tokeniser, "jieba" without the jieba package), or
             it or RAGREC["SEARCH_LANGUAGE"] names a text-search configuration the database does not have
             (database check)
ragrec.E017  RAGREC["TASK_QUEUES"] or ["ENCODE_ITEMS_PER_SECOND"] invalid (unknown workload, empty queue name,
             a rate that is not a number > 0)
ragrec.E020  RAGREC["EVENT_RETENTION_MONTHS"] invalid (not None or a whole number >= 1)
ragrec.W006  an encode chunk (ENCODE_CHUNK_SIZE items at the ENCODE_ITEMS_PER_SECOND rate of its modality) is
             expected to outlast the Celery broker's visibility_timeout (Redis, SQS): it would be redelivered to a
             second worker while the first still encodes it (docs/scaling.md, "Celery topology")
ragrec.I001  the server offers pgvectorscale, VectorChord or Citus, the options past one HNSW index (database
             check; docs/scaling.md, "Capacity plan")
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections

from .conf import ragrec_settings, text_searches, validate_serving_configs

#: ragrec.E007, and migration 0001's refusal on another database (``migrate --skip-checks``): (alias, vendor).
NEEDS_POSTGRESQL = "ragrec_django needs PostgreSQL with pgvector; the %s database is %s."
NEEDS_POSTGRESQL_HINT = (
    'Point DATABASES["default"] at PostgreSQL with pgvector; for development, ragrec_django.embedded.database_settings '
    'runs one with no install (README, "Using it in your shop").'
)


def _error(msg: str, id: str, hint: str | None = None) -> checks.Error:
    return checks.Error(msg, hint=hint, obj="settings.RAGREC", id=id)


@checks.register()
def check_settings(app_configs=None, **kwargs):
    try:
        _ = ragrec_settings.user_settings  # raises when RAGREC itself is invalid
    except ImproperlyConfigured as exc:
        return [_error(str(exc), "ragrec.E001")]

    from .adapters import get_adapter

    errors = []
    try:
        adapter = get_adapter()
    except ImproperlyConfigured as exc:
        errors.append(_error(str(exc), "ragrec.E003"))
    else:
        try:
            adapter.get_item_model()
        except ImproperlyConfigured as exc:
            errors.append(_error(str(exc), "ragrec.E002"))
    errors.extend(_check_encoders_and_spaces())
    errors.extend(_check_generators())
    return errors


def _check_generators():
    from . import registry

    aliases = set(ragrec_settings.GENERATORS) | {
        ragrec_settings.DESCRIPTION_GENERATOR,
        ragrec_settings.ASSISTANT_GENERATOR,
    }
    errors = []
    for alias in sorted(aliases):
        try:
            registry.get_generator(alias)
        except ImproperlyConfigured as exc:
            errors.append(_error(str(exc), "ragrec.E010"))
    return errors


def _check_encoders_and_spaces():
    from . import registry

    errors = []
    try:
        aliases = registry.encoder_configs()
    except ImproperlyConfigured as exc:
        return [_error(str(exc), "ragrec.E004")]
    encoders = {}
    for alias in aliases:
        try:
            encoders[alias] = registry.get_encoder(alias)
        except ImproperlyConfigured as exc:
            errors.append(_error(str(exc), "ragrec.E004", hint="Check the BACKEND path and OPTIONS of this encoder."))
    try:
        spaces = registry.get_spaces()
    except ImproperlyConfigured as exc:
        return errors + [_error(str(exc), "ragrec.E005")]
    for space in spaces.values():
        encoder = encoders.get(space.encoder_alias)
        if encoder is not None and space.modality not in encoder.modalities:
            errors.append(
                _error(
                    "Space %r asks encoder %r for %s, but it encodes only %s."
                    % (space.name, space.encoder_alias, space.modality, ", ".join(sorted(encoder.modalities))),
                    "ragrec.E006",
                )
            )
    return errors


@checks.register(checks.Tags.database)
def check_database(app_configs=None, databases=None, **kwargs):
    if not databases or "default" not in databases:
        return []
    connection = connections["default"]
    if connection.vendor != "postgresql":  # reported before `migrate` too, which runs this check first
        return [_error(NEEDS_POSTGRESQL % ("default", connection.vendor), "ragrec.E007", hint=NEEDS_POSTGRESQL_HINT)]
    if not _ragrec_migrated(connection):
        return []  # `migrate` is about to create the extension and tables
    from .storage import extension_version

    try:
        pgvector = extension_version("vector", using="default")
    except DatabaseError as exc:
        return [_error("Could not query the database: %s" % exc, "ragrec.E008")]
    if pgvector is None:
        return [
            _error(
                "The pgvector extension is not installed in the default database.",
                "ragrec.E008",
                hint="Run `manage.py migrate ragrec_django` (it creates the extension; needs a role allowed to), "
                "or install pgvector on the server.",
            )
        ]
    return _check_generations()


#: What each scale-out extension would change, when the server offers it (docs/scaling.md, "Capacity plan").
SCALE_EXTENSION_NOTES = {
    "vectorscale": "pgvectorscale's StreamingDiskANN index keeps large catalogues' vectors on disk with little RAM",
    "vchord": "VectorChord's IVF+RaBitQ index builds and searches large catalogues with far less memory than HNSW",
    "citus": "Citus can shard the item and embedding tables by item id across several servers",
}


@checks.register(checks.Tags.database)
def check_scale_extensions(app_configs=None, databases=None, **kwargs):
    """ragrec.I001: the server offers an extension for catalogues past one HNSW index (run with --database)."""
    if not databases or "default" not in databases or connections["default"].vendor != "postgresql":
        return []
    from .storage import scale_extensions

    try:
        offered = scale_extensions(using="default")
    except DatabaseError:
        return []  # check_database reports an unusable database
    return [
        checks.Info(
            "PostgreSQL offers the %r extension (%s): %s."
            % (name, "installed" if offered[name] else "available", note),
            hint="ragrec-django indexes with pgvector HNSW; see docs/scaling.md, 'Capacity plan', for when and how to "
            "use it.",
            id="ragrec.I001",
        )
        for name, note in SCALE_EXTENSION_NOTES.items()
        if name in offered
    ]


def _ragrec_migrated(connection) -> bool:
    from django.db.migrations.recorder import MigrationRecorder

    try:
        return MigrationRecorder(connection).migration_qs.filter(app="ragrec_django", name="0001_initial").exists()
    except DatabaseError:
        return False


def _check_generations():
    from . import registry
    from .models import SpaceGeneration

    messages = []
    try:
        spaces = registry.get_spaces()
        active = {g.space: g for g in SpaceGeneration.objects.filter(status=SpaceGeneration.Status.ACTIVE)}
    except (ImproperlyConfigured, DatabaseError):
        return []  # reported by check_settings, or the tables are not migrated yet
    for space in spaces.values():
        generation = active.get(space.name)
        if generation is None:
            continue
        try:
            encoder = space.encoder
            dimension, version = encoder.dimension, encoder.version
        except Exception as exc:  # a backend that cannot even read its config
            messages.append(
                _error("Encoder %r of space %r failed: %s" % (space.encoder_alias, space.name, exc), "ragrec.E004")
            )
            continue
        if generation.dimension != dimension:
            messages.append(
                _error(
                    "Space %r stores %d-dimensional vectors but encoder %r produces %d."
                    % (space.name, generation.dimension, space.encoder_alias, dimension),
                    "ragrec.E009",
                    hint="Run `manage.py ragrec_spaces switch %s` to re-encode into a new generation." % space.name,
                )
            )
        elif generation.encoder_version != version:
            messages.append(
                checks.Warning(
                    "Space %r was encoded with %r; its encoder is now %r, so queries and stored vectors differ."
                    % (space.name, generation.encoder_version, version),
                    hint="Run `manage.py ragrec_spaces switch %s`." % space.name,
                    obj="settings.RAGREC",
                    id="ragrec.W001",
                )
            )
    return messages


#: The settings ``conf.py`` validates, each reported under its own id.
VALIDATED_SETTINGS = {
    "EXPERIMENTS": "ragrec.E011",
    "SERVING_CONFIGS": "ragrec.E012",
    "FOR_YOU_WEIGHTS": "ragrec.E013",
    "SIMILAR_WEIGHTS": "ragrec.E013",
    "SEARCH_WEIGHTS": "ragrec.E013",
    "API_THROTTLE_RATES": "ragrec.E014",
    "SEARCH_TOKENISER": "ragrec.E018",
    "SEARCH_LANGUAGES": "ragrec.E019",
    "EVENT_RETENTION_MONTHS": "ragrec.E020",
}
HINTS = {
    "EXPERIMENTS": 'See docs/experiments.md for the shape of RAGREC["EXPERIMENTS"].',
    "SEARCH_LANGUAGES": 'e.g. {"de": "german", "zh": {"CONFIG": "simple", "TOKENISER": "jieba"}}; see docs/search.md, '
    '"More than English".',
}


@checks.register()
def check_validated_settings(app_configs=None, **kwargs):
    """The problems ``conf.py``'s validators find, one error per setting."""
    try:
        _ = ragrec_settings.user_settings
    except ImproperlyConfigured:
        return []  # ragrec.E001
    errors = []
    for name, check_id in VALIDATED_SETTINGS.items():
        try:
            value = getattr(ragrec_settings, name)  # checked when read (conf.VALIDATORS)
            if name == "SERVING_CONFIGS":
                validate_serving_configs(value)  # parsed per request when served: checked here
        except ImproperlyConfigured as exc:
            errors.append(_error(str(exc), check_id, hint=HINTS.get(name)))
    return errors


@checks.register(checks.Tags.database)
def check_text_search_configurations(app_configs=None, databases=None, **kwargs):
    """ragrec.E019 (database check): ``SEARCH_LANGUAGE`` or a configuration of ``SEARCH_LANGUAGES`` that the database
    does not have (every keyword search, and the sync of the items of that language, would fail)."""
    if not databases or "default" not in databases or connections["default"].vendor != "postgresql":
        return []
    from .storage import missing_text_search_configurations

    try:
        configurations = [config for config, _ in text_searches()]
        missing = missing_text_search_configurations(configurations, using="default")
    except (ImproperlyConfigured, DatabaseError):
        return []  # reported by check_validated_settings, or by check_database
    return [
        _error(
            "PostgreSQL has no text-search configuration %r (named by %s)."
            % (name, 'RAGREC["SEARCH_LANGUAGE"]' if name == configurations[0] else 'RAGREC["SEARCH_LANGUAGES"]'),
            "ragrec.E019",
            hint="`SELECT cfgname FROM pg_ts_config` lists those the database has (english, german, french, simple, "
            "...); run `manage.py ragrec_reindex` after changing it.",
        )
        for name in missing
    ]


@checks.register(checks.Tags.database)
def check_experiment_configs(app_configs=None, databases=None, **kwargs):
    if not databases or "default" not in databases or not _ragrec_migrated(connections["default"]):
        return []
    from .models import ServingConfig

    try:
        experiments = ragrec_settings.EXPERIMENTS
        names = {v.config for e in experiments for v in e.variants}
        known = set(ragrec_settings.SERVING_CONFIGS) | set(
            ServingConfig.objects.filter(name__in=names).values_list("name", flat=True)
        )
    except (ImproperlyConfigured, DatabaseError):
        return []  # reported by check_validated_settings, or the tables are not migrated yet
    return [
        checks.Warning(
            'Experiment %r, variant %r: no serving configuration named %r; its visitors are served "default".'
            % (experiment.name, variant.name, variant.config),
            hint='Add it to RAGREC["SERVING_CONFIGS"] or as a serving configuration in the admin.',
            obj="settings.RAGREC",
            id="ragrec.W002",
        )
        for experiment in experiments
        for variant in experiment.variants
        if variant.config not in known
    ]


#: Django settings that say a proxy in front sets request headers.
PROXY_HEADER_SETTINGS = ("SECURE_PROXY_SSL_HEADER", "USE_X_FORWARDED_HOST", "USE_X_FORWARDED_PORT")


@checks.register(checks.Tags.security)
def check_proxy_count(app_configs=None, **kwargs):
    """ragrec.W003: a proxy's headers are trusted, but no proxy count tells how to read the client's address."""
    trusted = [name for name in PROXY_HEADER_SETTINGS if getattr(settings, name, None)]
    if not trusted or (getattr(settings, "REST_FRAMEWORK", None) or {}).get("NUM_PROXIES") is not None:
        return []
    return [
        checks.Warning(
            '%s set (a proxy in front sets headers), but REST_FRAMEWORK["NUM_PROXIES"] is not: the API\'s throttles '
            "and popularity caps identify every client by the proxy's address." % " and ".join(trusted),
            hint='Set REST_FRAMEWORK["NUM_PROXIES"] to the number of proxies in front of Django (0 when none): the '
            "client's address is then read from the right of X-Forwarded-For, which they append to.",
            obj="settings.REST_FRAMEWORK",
            id="ragrec.W003",
        )
    ]


@checks.register()
def check_encode_on_save(app_configs=None, **kwargs):
    """ragrec.W004/W005: AUTO_ENCODE is on, but saved items cannot be queued (no celery package, no broker)."""
    from .receivers import CELERY_MISSING, NO_BROKER, encode_on_save_problem

    try:
        if not ragrec_settings.AUTO_ENCODE:
            return []
    except ImproperlyConfigured:
        return []  # ragrec.E001
    problem = encode_on_save_problem()
    off = 'or set RAGREC["AUTO_ENCODE"] = False and run `manage.py ragrec_reindex --stale` after catalogue changes.'
    if problem == CELERY_MISSING:
        hint, check_id = (
            'Install the celery extra (pip install "ragrec-django[celery]") and configure a broker, ' + off,
            "W004",
        )
    elif problem == NO_BROKER:
        hint = (
            "Set CELERY_BROKER_URL and load a Celery app configured from the Django settings "
            '(app.config_from_object("django.conf:settings", namespace="CELERY") in yourproject/celery.py, imported by '
            "yourproject/__init__.py), " + off
        )
        check_id = "W005"
    else:
        return []
    return [
        checks.Warning(
            'RAGREC["AUTO_ENCODE"] is on but %s: saved items are not queued for re-encoding (each save logs a warning '
            "and records the item for `manage.py ragrec_reindex --stale`)." % problem,
            hint=hint,
            obj="settings.RAGREC",
            id="ragrec." + check_id,
        )
    ]


#: The module a host includes to mount the REST API.
API_URLCONF = "ragrec_django.api.urls"


@checks.register(checks.Tags.urls)
def check_api_apps(app_configs=None, **kwargs):
    """ragrec.E015: the URLs include the REST API, but DRF or drf-spectacular is not set up for it."""
    from django.apps import apps
    from django.conf import settings
    from django.urls import get_resolver

    if not getattr(settings, "ROOT_URLCONF", None) or not _includes(get_resolver(), API_URLCONF):
        return []
    from drf_spectacular.openapi import AutoSchema
    from rest_framework.settings import api_settings

    errors = []
    if not apps.is_installed("rest_framework"):
        errors.append(
            checks.Error(
                'The URLs include %s, but "rest_framework" is not in INSTALLED_APPS: API pages opened in a browser '
                "fail (its templates are missing)." % API_URLCONF,
                hint='Add "rest_framework" to INSTALLED_APPS (installed by pip install "ragrec-django[api]").',
                obj="settings.INSTALLED_APPS",
                id="ragrec.E015",
            )
        )
    if not issubclass(api_settings.DEFAULT_SCHEMA_CLASS, AutoSchema):
        errors.append(
            checks.Error(
                'The URLs include %s, but REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] is not drf-spectacular\'s: its '
                "schema/ and docs/ pages fail." % API_URLCONF,
                hint='Set REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}.',
                obj="settings.REST_FRAMEWORK",
                id="ragrec.E015",
            )
        )
    return errors


def _includes(resolver, module_name: str) -> bool:
    """Whether ``resolver`` includes the URL module ``module_name``, at any depth."""
    from django.urls import URLResolver

    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver) and (
            getattr(pattern.urlconf_module, "__name__", None) == module_name or _includes(pattern, module_name)
        ):
            return True
    return False


@checks.register()
def check_read_database(app_configs=None, **kwargs):
    """ragrec.E016: the read replicas of ``RAGREC["READ_DATABASE"]`` are not usable aliases of DATABASES."""
    try:
        _ = ragrec_settings.user_settings
    except ImproperlyConfigured:
        return []  # ragrec.E001
    from .storage.database import read_database_problems

    hint = 'Name aliases of DATABASES holding PostgreSQL replicas of "default" (docs/scaling.md).'
    return [_error(problem, "ragrec.E016", hint=hint) for problem in read_database_problems()]


@checks.register()
def check_task_queues(app_configs=None, **kwargs):
    """ragrec.E017: the task queues or encode rates are invalid; ragrec.W006: a batch outlasts the visibility timeout."""
    from . import queues

    try:
        _ = ragrec_settings.user_settings
    except ImproperlyConfigured:
        return []  # ragrec.E001
    try:
        queues.task_queues()
        queues.encode_rates()
    except ImproperlyConfigured as exc:
        return [_error(str(exc), "ragrec.E017")]
    try:
        slow = queues.slow_batches(*queues.celery_broker())
    except ImproperlyConfigured:
        return []  # the spaces are invalid: ragrec.E004/E005
    return [
        checks.Warning(batch.message(), hint=batch.hint(), obj="settings.RAGREC", id="ragrec.W006") for batch in slow
    ]
