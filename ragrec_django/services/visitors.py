"""Who is asking: the visitor of a request, shared by the REST API, the template tags and the demo.

Precedence, first that applies:

1. the authenticated user (``request.user``): their own history;
2. an explicit session id (the REST API's ``session`` query parameter);
3. the request's Django session key (the session cookie);

otherwise the visitor is anonymous and unknown: "for you" is then the trending
list (``fallback="trending"``) and "recently viewed" / "buy again" are empty.

Plain Django (no DRF import), so the template tags work without the ``api`` extra.
"""

from __future__ import annotations

from . import recommend
from .recommend import RecommendationList, Visitor


def visitor_for_request(request, session: str | None = None) -> Visitor:
    """The ``Visitor`` whose history personalises results for ``request`` (see the precedence above)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return Visitor(user_id=user.pk)
    if session:
        return Visitor(session_key=session)
    django_session = getattr(request, "session", None)
    key = getattr(django_session, "session_key", None) if django_session is not None else None
    return Visitor(session_key=key or "")


def ensure_session_key(request) -> str:
    """The request's session key, creating a session (and so its cookie) when the visitor has none."""
    session = getattr(request, "session", None)
    if session is None:
        return ""
    if not session.session_key:
        session.save()  # creates the key and marks the session modified: SessionMiddleware sends the cookie
    return session.session_key or ""


def for_you(visitor: Visitor, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """``recommend.for_you``, never called with an empty visitor.

    ``Visitor()`` (no user, no session) would select every event with an empty
    session key, i.e. all signed-in users' events, as "your" history; an
    unknown visitor gets the trending list, as the service does for a visitor
    without history.
    """
    if not visitor:
        result = recommend.trending(k=k, config=config)
        result.recommender, result.fallback = "for_you", "trending"
        return result
    return recommend.for_you(visitor, k=k, config=config)
