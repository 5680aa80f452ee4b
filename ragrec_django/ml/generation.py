"""Generator interface shared by every text-generation backend (no Django).

A backend is built from its ``OPTIONS`` as keyword arguments, loads lazily,
and turns a ``GenerationRequest`` into text. LLM backends use ``messages``
(system + user, the user message carrying the delimited product data); the
offline backend writes only from ``facts`` and ``sources``, so it can never
invent a claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class GenerationError(Exception):
    """The backend could not produce text (unreachable server, bad response, model failure)."""


@dataclass
class GenerationRequest:
    #: "description" (write a product description) or "assistant" (answer a shopper from candidates).
    task: str
    #: Chat messages: [{"role": "system"|"user"|"assistant", "content": str}, ...].
    messages: list[dict[str, str]]
    #: The product's own fields for "description" (title, category, colour, material, size, price,
    #: description, attributes...), or the shopper's request for "assistant" ({"request": str}).
    facts: dict[str, Any] = field(default_factory=dict)
    #: Retrieved context: [{"id": str, "title": str, "text": str, "fields": {...}}, ...]
    #: (similar products' approved descriptions for "description"; candidate products for "assistant").
    sources: list[dict[str, Any]] = field(default_factory=list)
    max_tokens: int = 400
    temperature: float = 0.2


class Generator:
    """Base class of generation backends."""

    @property
    def version(self) -> str:
        """Stable identifier of the backend and model, stored with each draft."""
        raise NotImplementedError

    def generate(self, request: GenerationRequest) -> str:
        raise NotImplementedError
