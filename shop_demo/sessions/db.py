"""Django's database session store, refusing keys Django could not have issued (see ``shop_demo.sessions``)."""

from django.contrib.sessions.backends import db

from . import IssuableKeys


class SessionStore(IssuableKeys, db.SessionStore):
    pass
