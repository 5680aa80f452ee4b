"""Django's cached database session store, refusing keys Django could not have issued (see ``shop_demo.sessions``)."""

from django.contrib.sessions.backends import cached_db

from . import IssuableKeys


class SessionStore(IssuableKeys, cached_db.SessionStore):
    pass
