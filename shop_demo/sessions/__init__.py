"""Session engines of the demo: Django's, refusing a session cookie that is not a key Django could issue.

Django's stores accept any cookie value of 8 characters or more as a session key and look it up: a
cookie holding a NUL (``sessionid="abcdefgh\\000"``, which Python's cookie parser unquotes) reaches
PostgreSQL and fails there, so every page that reads the session was a 500 (found by
``tests/hardening/test_html_fuzz.py``). Here a key must be made of the characters Django draws keys
from; any other cookie starts a new session, as an unknown key does. ``SESSION_ENGINE`` names
``shop_demo.sessions.db`` (the demo) or ``shop_demo.sessions.cached_db`` (the production example).
"""

from __future__ import annotations

from django.contrib.sessions.backends.base import VALID_KEY_CHARS


class IssuableKeys:
    """A session store mixin: only keys of Django's own alphabet are looked up."""

    def _validate_session_key(self, key):
        return super()._validate_session_key(key) and all(char in VALID_KEY_CHARS for char in key)
