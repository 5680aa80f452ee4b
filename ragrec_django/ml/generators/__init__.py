"""Text-generation backends behind the ``Generator`` interface (``ragrec_django.ml.generation``).

- ``FactsGenerator`` (offline, default): deterministic text written only from the request's facts and sources.
- ``OpenAICompatibleGenerator``: any OpenAI chat-completions server (OpenAI, vLLM, Ollama, llama.cpp...).
- ``TransformersGenerator``: a causal LM run in-process through Hugging Face ``transformers``.

Importing this package or constructing a backend imports neither torch nor transformers.
"""

from .local_transformers import TransformersGenerator
from .offline import FactsGenerator
from .openai_compat import OpenAICompatibleGenerator

__all__ = ["FactsGenerator", "OpenAICompatibleGenerator", "TransformersGenerator"]
