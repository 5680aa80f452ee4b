"""Every fixed input limit of ragrec_django, one constant each.

The services enforce them (``services.inputs``, ``services.events``, ``services.assistant``), the REST
API's serializers declare them (so the OpenAPI schema shows them), and README.md's "Input limits" table
quotes them: ``tests/hardening/test_limits.py`` checks that the table, the schema and the refusals
agree with the values here. Limits a host may change are settings instead (``MAX_K``,
``MAX_UPLOAD_BYTES``, ``MAX_IMAGE_PIXELS``: see ``conf.py``).
"""

from __future__ import annotations

#: Text search (``services.recommend.search``, API ``search/?q=``, ``{% ragrec_search %}``).
SEARCH_QUERY_MAX_CHARS = 300
#: A request to the shopping assistant (``services.assistant.answer``, API ``assistant/?q=``). The
#: products are retrieved with the request's first ``SEARCH_QUERY_MAX_CHARS`` characters of query words.
ASSISTANT_REQUEST_MAX_CHARS = 500
#: Events per post (``services.events.record_events``, API ``events/``).
EVENT_BATCH_MAX = 500
#: The query of a search event.
EVENT_QUERY_MAX_CHARS = 500
#: Largest quantity of an event (1 to this).
EVENT_QUANTITY_MAX = 10_000
#: How far in the future an event's ``created_at`` may be (clock skew of the client), in minutes.
EVENT_CLOCK_SKEW_MINUTES = 10
#: An item key (the host's primary key as text; ``Item.key``).
ITEM_KEY_MAX_CHARS = 64
#: An anonymous visitor's session key (``Interaction.session_key``; the API's ``session`` parameter).
SESSION_KEY_MAX_CHARS = 64
#: An event's ``order_id`` (room for composite ids such as a customer id and a date; ``Interaction.order_id``).
ORDER_ID_MAX_CHARS = 255
#: An event's ``source``.
EVENT_SOURCE_MAX_CHARS = 64
#: An idempotency key of an event (the ``Idempotency-Key`` header or ``idempotency_key``).
IDEMPOTENCY_KEY_MAX_CHARS = 128
#: Items in a basket (API ``basket/bought-together/?items=``).
BASKET_MAX_ITEMS = 50
#: A category name (API ``trending/?category=``).
CATEGORY_MAX_CHARS = 200
#: A staff member's note on a flagged conversation turn (admin).
TURN_FLAG_NOTE_MAX_CHARS = 1000
#: Characters of an item's text that go into its full-text vector. PostgreSQL refuses a tsvector whose words
#: add up to 1 MB ("string is too long for tsvector"), which a very long text (or a CJK text split into
#: bigrams: 300,000 characters make 3 MB) would reach, failing the whole sync batch.
INDEXED_TEXT_MAX_CHARS = 100_000

#: The limits README.md's "Input limits" table lists, by constant name.
DOCUMENTED = (
    "SEARCH_QUERY_MAX_CHARS",
    "ASSISTANT_REQUEST_MAX_CHARS",
    "EVENT_BATCH_MAX",
    "EVENT_QUERY_MAX_CHARS",
    "EVENT_QUANTITY_MAX",
    "EVENT_CLOCK_SKEW_MINUTES",
    "ITEM_KEY_MAX_CHARS",
    "SESSION_KEY_MAX_CHARS",
    "ORDER_ID_MAX_CHARS",
    "EVENT_SOURCE_MAX_CHARS",
    "IDEMPOTENCY_KEY_MAX_CHARS",
    "BASKET_MAX_ITEMS",
    "CATEGORY_MAX_CHARS",
)
