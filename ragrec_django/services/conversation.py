"""A multi-turn shopping assistant: it asks, remembers, takes feedback and learns the shopper's taste.

One turn (``take_turn``):

1. load the conversation's ``DialogueState`` and fold in the shopper's message (``generation.dialogue.parse``)
   and/or feedback on a shown product (``feedback_update``);
2. when the request is still too vague to rank (no product, budget, liked product or interest) and no question
   was asked yet, ASK one clarifying question with quick replies drawn from the catalogue's categories;
3. otherwise retrieve: the hybrid search (``services.search``) on the products asked for, the budget and category
   as hard filters, fused with items similar to the liked products; then the must-nots are dropped (excluded
   colours, words, products, and on "show me more" everything already seen) and the candidates are re-ranked by
   the conversation's taste profile, a Rocchio update of the query vector in the text space (towards the liked
   products, away from the disliked ones; ``RAGREC["CONVERSATION_ROCCHIO"]``);
4. answer citing only the retrieved products (the one-shot assistant's generator request and citation
   validation), with per-product reasons, and ask for feedback;
5. save the turn (message, feedback, answer, question, products shown, state) and the new state; a like (or
   "add to basket") on a product is also recorded as a ``click`` interaction event (source "assistant",
   idempotent per conversation, product and action), so it counts in the visitor's history.

With an LLM generator as ``RAGREC["ASSISTANT_GENERATOR"]``, the message is understood by the LLM as JSON valid
against ``dialogue.EXTRACTION_SCHEMA`` (a bad reply is retried once, then the rule parser is used); with the
offline generator (the default), by the rule parser.

A conversation belongs to its visitor (user or session): anyone else gets ``ConversationNotFound``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .. import registry, storage
from ..conf import ragrec_settings
from ..exceptions import BadQuery, EventError, ItemNotFound
from ..generation import dialogue
from ..generation.prompt import build_assistant_request
from ..generation.sanitise import sanitise_output
from ..limits import ASSISTANT_REQUEST_MAX_CHARS
from ..ml.generation import GenerationError
from ..ml.generators.offline import FactsGenerator
from ..models import Conversation, Item, Turn
from ..ranking.fusion import reciprocal_rank_fusion
from ..storage import search as search_storage
from . import assistant
from .events import EventInput, record_events
from .inputs import checked_text
from .query_vectors import text_query_vector
from .recommend import Recommendation, similar_items, trending
from .results import Visitor, candidates_from, query_encoder_matches, serving_rules, space_ready
from .search import search

VAGUE_QUESTION = "Happy to help! What kind of thing are you looking for, and roughly what budget?"
FEEDBACK_QUESTION = (
    "Are any of these close? Tell me what to change: cheaper, another colour, more like one of them, or not something."
)
NOTHING_FOUND = "Nothing in the shop matches all of that."
NOTHING_QUESTION = "Shall I drop one of the constraints? You can remove one below, or start over."
FEEDBACK_REPLIES = ["Cheaper", "Show me more", "More like the first one", "Start over"]
#: A product shown this many times without a like goes after those not shown as often (it is not excluded).
SHOWN_BEFORE_MAKING_WAY = 2
#: Feedback recorded as a positive interaction event (there is no negative event type).
POSITIVE_FEEDBACK = ("like", "basket")

logger = logging.getLogger(__name__)


class ConversationNotFound(ItemNotFound):
    """No conversation with this id for this visitor (another visitor's conversation is not found either)."""


@dataclass
class TurnResult:
    conversation: Conversation
    number: int
    answer: str
    products: list[Recommendation]
    state: dialogue.DialogueState
    question: str = ""
    quick_replies: list[str] = field(default_factory=list)
    #: Per shown product key, why it fits: the constraints it meets and the feedback it reflects.
    reasons: dict[str, list[str]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- conversations of a visitor


def start(visitor: Visitor) -> Conversation:
    """A new, empty conversation of ``visitor`` (who must be known: a user or a session)."""
    if not visitor:
        raise BadQuery("A conversation needs a signed-in user or a session.")
    return Conversation.objects.create(user_id=visitor.user_id, session_key=visitor.session_key or "")


def _owned_by(visitor: Visitor):
    if visitor.user_id is not None:
        return Conversation.objects.filter(user_id=visitor.user_id)
    if visitor.session_key:
        return Conversation.objects.filter(user__isnull=True, session_key=visitor.session_key)
    return Conversation.objects.none()


def get(conversation_id, visitor: Visitor) -> Conversation:
    """The visitor's conversation ``conversation_id``; ``ConversationNotFound`` for any other."""
    try:
        conversation = _owned_by(visitor).filter(pk=conversation_id).first()
    except (ValueError, TypeError, ValidationError):  # not a UUID
        conversation = None
    if conversation is None:
        raise ConversationNotFound("No conversation %s." % str(conversation_id)[:64])
    return conversation


def delete(conversation_id, visitor: Visitor) -> None:
    """Delete the visitor's conversation and its turns."""
    get(conversation_id, visitor).delete()


def clear(visitor: Visitor) -> int:
    """Delete all of the visitor's conversations; how many there were."""
    owned = _owned_by(visitor)
    count = owned.count()
    owned.delete()
    return count


def purge(days: int | None = None) -> int:
    """Delete conversations untouched for ``days`` (``CONVERSATION_RETENTION_DAYS``); how many were deleted."""
    days = int(ragrec_settings.CONVERSATION_RETENTION_DAYS if days is None else days)
    old = Conversation.objects.filter(updated_at__lt=timezone.now() - timedelta(days=days))
    count = old.count()
    old.delete()
    return count


def categories() -> list[str]:
    """The catalogue's categories of recommendable items, most items first (cached with the catalogue)."""
    counts = search_storage.attribute_values(_attribute_names())["category"]
    return sorted(counts, key=lambda name: (-counts[name], name))


def attribute_values() -> dict[str, list[str]]:
    """The catalogue's values of the attributes a shopper may ask for by name (colour, material, size)."""
    values = search_storage.attribute_values(_attribute_names())
    return {name: list(values[name]) for name in _attribute_names() if name in values}


def _attribute_names() -> list[str]:
    return [name for name in ragrec_settings.SEARCH_ATTRIBUTES if name in ("colour", "color", "material", "size")]


# ---------------------------------------------------------------- a turn


def take_turn(
    conversation: Conversation, message: str = "", feedback: dict | None = None, *, config: str = "default"
) -> TurnResult:
    """One turn of ``conversation`` (see the module's docstring). ``feedback``: {"item": key, "action": one of
    ``dialogue.FEEDBACK_ACTIONS``} on a product shown last; ``BadQuery`` for neither or a bad one."""
    return finish_turn(begin_turn(conversation, message, feedback), config=config)


@dataclass
class PendingTurn:
    """A turn understood but not answered yet: the state with the message and feedback folded in. ``take_turn``
    in two steps, so the streaming API can send the state before retrieval (``api/streaming.py``)."""

    conversation: Conversation
    message: str
    feedback: dict
    state: dialogue.DialogueState
    known: list[str]


def begin_turn(conversation: Conversation, message: str = "", feedback: dict | None = None) -> PendingTurn:
    """Step 1 of ``take_turn``: check the input (``BadQuery``) and fold it into the state; nothing is saved."""
    message = message.strip() if isinstance(message, str) else ""
    if message:
        message = checked_text(message, what="The message", max_chars=ASSISTANT_REQUEST_MAX_CHARS, empty="")
    if not message and not feedback:
        raise BadQuery("Send a message or feedback on a product.")
    known = categories()
    conversation.refresh_from_db(fields=["state"])
    state = dialogue.DialogueState.from_dict(conversation.state)
    if feedback:
        state = dialogue.apply(state, _feedback(state, feedback))
    if message:
        state = dialogue.apply(state, understand(message, state, known))
    return PendingTurn(conversation, message, feedback or {}, state, known)


def finish_turn(pending: PendingTurn, *, config: str = "default") -> TurnResult:
    """Step 2 of ``take_turn``: answer (question or products), save the turn, record a like or basket event."""
    conversation, message, feedback = pending.conversation, pending.message, pending.feedback
    result = _respond(conversation, pending.state, message, config, pending.known)
    _save(result, message, feedback)
    if feedback and feedback.get("action") in POSITIVE_FEEDBACK:
        _record_feedback(conversation, str(feedback["item"]), feedback["action"])
    return result


def without_constraint(conversation: Conversation, kind: str, value: str, *, config: str = "default") -> TurnResult:
    """A turn that removes one of the state's constraints (a chip of ``DialogueState.chips``) and answers again."""
    conversation.refresh_from_db(fields=["state"])
    try:
        state = dialogue.remove_constraint(dialogue.DialogueState.from_dict(conversation.state), kind, value)
    except ValueError as exc:
        raise BadQuery(str(exc)) from exc
    result = _respond(conversation, state, "", config, categories())
    _save(result, "", {"action": "remove", "constraint": kind, "value": value})
    return result


def latest(conversation: Conversation) -> TurnResult | None:
    """The conversation's last turn as it was answered (products, reasons, question), or ``None`` before any."""
    turn = conversation.turns.order_by("-number").first()
    if turn is None:
        return None
    state = dialogue.DialogueState.from_dict(turn.state)
    items = {item.key: item for item in Item.objects.filter(key__in=turn.item_keys)}
    products = [Recommendation(items[key], 0.0, "", [], {}) for key in turn.item_keys if key in items]
    reasons = _all_reasons(products, state)
    return TurnResult(
        conversation, turn.number, turn.answer, products, state, turn.question, _quick_replies(turn.question), reasons
    )


def understand(message: str, state: dialogue.DialogueState, known: list[str]) -> dialogue.Update:
    """What ``message`` changes: the LLM's JSON (validated, one retry) when an LLM generator is configured,
    else (or when both replies are bad) the rule parser's reading."""
    generator = registry.get_generator(ragrec_settings.ASSISTANT_GENERATOR)
    if not isinstance(generator, FactsGenerator):
        request = dialogue.build_extraction_request(message, state, categories=known)
        for attempt in (1, 2):
            try:
                return dialogue.update_from_json(generator.generate(request), state, categories=known)
            except (GenerationError, ValueError) as exc:
                logger.warning("Constraint extraction, try %d of 2, unusable: %s", attempt, exc)
    return dialogue.parse(message, state, categories=known, attributes=attribute_values())


def _respond(
    conversation: Conversation, state: dialogue.DialogueState, message: str, config: str, known: list[str]
) -> TurnResult:
    """One clarifying question when the request is too vague and none was asked yet, else products."""
    if state.has_request() or state.asked:
        return _recommend(conversation, state, message, config)
    state.asked = True
    return TurnResult(
        conversation, 0, "Tell me a little more and I'll find something.", [], state, VAGUE_QUESTION, known[:4]
    )


def _quick_replies(question: str) -> list[str]:
    if question == VAGUE_QUESTION:
        return categories()[:4]
    return ["Start over"] if question == NOTHING_QUESTION else FEEDBACK_REPLIES


def _record_feedback(conversation: Conversation, key: str, action: str) -> None:
    """A like of a shown product as a ``click`` event of the conversation's visitor (once per product and action)."""
    event = EventInput(
        event="click",
        item=key,
        user_id=conversation.user_id,
        session_key=conversation.session_key,
        source="assistant",
        idempotency_key="assistant:%s:%s:%s" % (conversation.pk, action, key[:64]),
    )
    try:
        record_events([event])
    except EventError as exc:  # the item left the catalogue meanwhile: the turn stands without the event
        logger.warning("Assistant feedback not recorded: %s", exc)


def _feedback(state: dialogue.DialogueState, feedback: dict) -> dialogue.Update:
    action, key = feedback.get("action"), str(feedback.get("item", ""))
    shown = {item.key: item for item in state.shown_items()}
    if key not in shown:
        raise BadQuery("Feedback is about a product shown in the last answer (got %r)." % key[:64])
    try:
        return dialogue.feedback_update(str(action), shown[key])
    except ValueError as exc:
        raise BadQuery(str(exc)) from exc


def _recommend(conversation: Conversation, state: dialogue.DialogueState, message: str, config: str) -> TurnResult:
    page_size = int(ragrec_settings.CONVERSATION_PAGE_SIZE)
    pool = _candidates(state, config, depth=min(int(ragrec_settings.MAX_K), page_size * 6 + len(state.seen)))
    grouped = serving_rules(config).group_variants
    allowed = [rec for rec in (_with_variants(pool) if grouped else pool) if _fits(rec.item, state)]
    ranked = _reranked(allowed, state)
    ranked = (_one_per_group(ranked) if grouped else ranked)[:page_size]
    shown = [_shown(rec.item) for rec in ranked]
    new_state = dialogue.remember_shown(state, shown)
    if not ranked:
        return TurnResult(
            conversation, 0, NOTHING_FOUND, [], new_state, NOTHING_QUESTION, _quick_replies(NOTHING_QUESTION)
        )
    reasons = _all_reasons(ranked, state)
    text, dropped = _answer(_describe(state), ranked)
    return TurnResult(conversation, 0, text, ranked, new_state, FEEDBACK_QUESTION, FEEDBACK_REPLIES, reasons, dropped)


def _with_variants(pool: list[Recommendation]) -> list[Recommendation]:
    """``pool`` with the other variants of each product's group right after it: retrieval shows one product per
    group, but a must-not (a disliked or excluded colour) drops that product, not its family, and the variant
    with the asked size or colour may be another one."""
    groups = {rec.item.group_key for rec in pool if rec.item.group_key}
    if not groups:
        return pool
    present = {rec.item.id for rec in pool}
    siblings: dict[str, list[Item]] = {}
    for item in Item.objects.filter(group_key__in=groups, is_eligible=True).defer("search_vector").order_by("id"):
        if item.id not in present:
            siblings.setdefault(item.group_key, []).append(item)
    expanded = []
    for rec in pool:
        expanded.append(rec)
        for item in siblings.pop(rec.item.group_key, []) if rec.item.group_key else []:
            expanded.append(Recommendation(item, rec.score, rec.reason, list(rec.reasons), dict(rec.components)))
    return expanded


def _one_per_group(ranked: list[Recommendation]) -> list[Recommendation]:
    """The first (best-ranked) product of each variant group."""
    seen_groups, kept = set(), []
    for rec in ranked:
        if rec.item.group_key and rec.item.group_key in seen_groups:
            continue
        seen_groups.add(rec.item.group_key)
        kept.append(rec)
    return kept


def _query_text(state: dialogue.DialogueState) -> str:
    words = [*state.colours, *state.materials, *state.sizes, state.query, *state.interests]
    if not (state.query or state.category):
        words += [state.occasion or "", "for %s" % state.recipient if state.recipient else ""]
    return " ".join(w for w in words if w).strip()


def _candidates(state: dialogue.DialogueState, config: str, depth: int) -> list[Recommendation]:
    """Search results under the hard filters, fused (RRF) with items similar to the liked products."""
    lists: dict[str, list[Recommendation]] = {}
    query = _query_text(state) or state.category
    price = {
        name: Decimal(str(value))
        for name, value in (("min_price", state.min_price), ("max_price", state.max_price))
        if value is not None
    }
    selected = {}
    if state.category:
        selected["category"] = [state.category]
    if state.only_colours and state.colours:
        selected["colour"] = list(state.colours)
    if query:
        lists["search"] = search(query, k=depth, config=config, selected=selected, **price).items
    for key in state.liked[-3:]:
        try:
            lists["like:%s" % key] = similar_items(key, k=depth, config=config).items
        except (ItemNotFound, storage.SpaceNotReady):
            continue
    if not lists:  # a budget only, and the shopper was asked already: what is popular in it
        lists["trending"] = trending(k=depth, config=config, category=state.category or None).items
    by_id = {rec.item.id: rec for recs in lists.values() for rec in recs}
    fused = reciprocal_rank_fusion(
        {name: candidates_from([(rec.item.id, rec.score) for rec in recs], name, name) for name, recs in lists.items()}
    )
    return [by_id[candidate.item_id] for candidate in fused]


def _words(item: Item) -> set[str]:
    return {dialogue.singular(w) for w in ("%s %s" % (item.title, item.category)).lower().replace("-", " ").split()}


def _attribute(item: Item, name: str) -> str:
    return str((item.metadata or {}).get(name) or "").lower()


def _fits(item: Item, state: dialogue.DialogueState) -> bool:
    """Whether ``item`` meets the state's hard constraints and must-nots (and is new on "show me more")."""
    price = float(item.price) if item.price is not None else None
    if state.min_price is not None and (price is None or price < state.min_price):
        return False
    if state.max_price is not None and (price is None or price > state.max_price):
        return False
    if state.category and item.category != state.category:
        return False
    colour = _attribute(item, "colour") or _attribute(item, "color")
    if colour and colour in state.excluded_colours:
        return False
    if state.only_colours and state.colours and colour not in state.colours:
        return False
    excluded = set(state.excluded_terms)
    if excluded & (_words(item) | {_attribute(item, "material")}):
        return False
    if item.key in state.excluded_keys or item.key in state.liked:
        return False
    return not (state.page and item.key in state.seen)


def _preferences_met(item: Item, state: dialogue.DialogueState) -> int:
    """How many of the attributes the shopper asked for (colours, materials, sizes) ``item`` has."""
    met = 0
    for wanted, names in (
        (state.colours, ("colour", "color")),
        (state.materials, ("material",)),
        (state.sizes, ("size",)),
    ):
        if wanted and any(_attribute(item, name) in wanted for name in names):
            met += 1
    return met


def _reranked(recs: list[Recommendation], state: dialogue.DialogueState) -> list[Recommendation]:
    """``recs`` with the products meeting more of the asked attributes first; among equals, products already shown
    ``SHOWN_BEFORE_MAKING_WAY`` times (and not liked) after the others, then by the taste profile when the shopper
    liked or disliked products (else in retrieval order)."""
    if not recs:
        return recs
    taste = _taste(recs, state)
    weight = float(ragrec_settings.CONVERSATION_PROFILE_WEIGHT)

    def order(pair: tuple[int, Recommendation]) -> tuple[int, bool, float]:
        position, rec = pair
        tired = state.exposures.get(rec.item.key, 0) >= SHOWN_BEFORE_MAKING_WAY
        score = 1.0 / (1 + position) + weight * taste.get(rec.item.id, 0.0)
        return -_preferences_met(rec.item, state), tired, -score

    return [rec for _, rec in sorted(enumerate(recs), key=order)]


def _taste(recs: list[Recommendation], state: dialogue.DialogueState) -> dict[int, float]:
    """Cosine of each candidate with the conversation's taste profile in the text space: a Rocchio update of the
    query vector towards the liked products and away from the disliked ones (empty without feedback)."""
    if not (state.liked or state.disliked) or not space_ready("text"):
        return {}
    weights = ragrec_settings.CONVERSATION_ROCCHIO
    keys = [*state.liked, *state.disliked]
    ids = dict(Item.objects.filter(key__in=keys).values_list("key", "id"))
    vectors = storage.vectors_for_items("text", [*ids.values(), *(rec.item.id for rec in recs)])
    profile = np.zeros(0, dtype=np.float32)
    query = _query_text(state)
    if query and query_encoder_matches("text"):
        profile = float(weights.get("query", 1.0)) * _unit(text_query_vector("text", query))
    for group, sign in ((state.liked, 1.0), (state.disliked, -1.0)):
        found = [_unit(vectors[ids[key]]) for key in group if key in ids and ids[key] in vectors]
        if found:
            part = sign * float(weights.get("liked" if sign > 0 else "disliked", 0.5)) * np.mean(found, axis=0)
            profile = part if profile.size == 0 else profile + part
    if profile.size == 0 or not np.linalg.norm(profile):
        return {}
    profile = _unit(profile)
    return {
        rec.item.id: float(_unit(vectors[rec.item.id]) @ profile)
        for rec in recs
        if rec.item.id in vectors and vectors[rec.item.id].shape == profile.shape
    }


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = np.linalg.norm(vector)
    return vector / norm if norm else vector


def _shown(item: Item) -> dialogue.ShownItem:
    return dialogue.ShownItem(
        key=item.key,
        title=item.title,
        category=item.category,
        price=float(item.price) if item.price is not None else None,
        colour=_attribute(item, "colour") or _attribute(item, "color"),
        size=_attribute(item, "size"),
    )


def _all_reasons(products: list[Recommendation], state: dialogue.DialogueState) -> dict[str, list[str]]:
    """Per shown product key, why it fits (``_reasons``); the liked products' titles are read once."""
    liked = list(Item.objects.filter(key__in=state.liked[-2:]).values_list("title", flat=True)) if state.liked else []
    return {rec.item.key: _reasons(rec.item, state, liked) for rec in products}


def _reasons(item: Item, state: dialogue.DialogueState, liked_titles: list[str]) -> list[str]:
    """Why ``item`` fits: the constraints it meets and the feedback it reflects."""
    reasons = []
    if state.category:
        reasons.append(item.category)
    colour = _attribute(item, "colour") or _attribute(item, "color")
    if colour and colour in state.colours:
        reasons.append(colour)
    reasons += [
        value
        for value in (_attribute(item, "material"), _attribute(item, "size"))
        if value and value in [*state.materials, *state.sizes]
    ]
    if state.max_price is not None and state.min_price is not None:
        reasons.append("between %s and %s" % (dialogue.money(state.min_price), dialogue.money(state.max_price)))
    elif state.max_price is not None:
        reasons.append("under %s" % dialogue.money(state.max_price))
    elif state.min_price is not None:
        reasons.append("over %s" % dialogue.money(state.min_price))
    reasons += ["not %s" % c for c in state.excluded_colours if colour and colour != c]
    reasons += ["because you liked %s" % title for title in liked_titles]
    return reasons


def _describe(state: dialogue.DialogueState) -> str:
    return ", ".join(chip["label"] for chip in state.chips()) or "something from the shop"


def _answer(request_text: str, recs: list[Recommendation]) -> tuple[str, list[str]]:
    """The generator's answer about ``recs``, keeping only sentences that cite retrieved products."""
    by_key = {rec.item.key: rec for rec in recs}
    generator = registry.get_generator(ragrec_settings.ASSISTANT_GENERATOR)
    raw = generator.generate(build_assistant_request(request_text, [assistant._source(rec) for rec in recs]))
    kept, _, dropped = assistant._validated_sentences(sanitise_output(raw).html, set(by_key))
    return (" ".join(kept) if kept else "Here is what I found."), dropped


def _save(result: TurnResult, message: str, feedback: dict) -> None:
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=result.conversation.pk)
        result.number = conversation.turns.count() + 1
        Turn.objects.create(
            conversation=conversation,
            number=result.number,
            message=message,
            feedback=feedback,
            answer=result.answer,
            question=result.question,
            item_keys=[rec.item.key for rec in result.products],
            state=result.state.as_dict(),
        )
        conversation.state = result.state.as_dict()
        conversation.save(update_fields=["state", "updated_at"])
    result.conversation.state = conversation.state
