"""Generation with a local causal language model through Hugging Face ``transformers``.

``model`` is a hub id (resolved through the local Hugging Face cache; set
``HF_HUB_OFFLINE=1`` on machines without internet) or a local folder with the
weights, config and tokenizer. The model loads on the first ``generate()``,
once per process and configuration (``load_once``), on the GPU when one is
present (``device="auto"``). Importing this module or constructing the backend
does not import torch or transformers.

The prompt is built with the tokenizer's chat template when it has one (a
template that rejects the "system" role gets the system text prepended to the
first user message instead), else as plain ``role: content`` lines ending with
``assistant:``. Temperature 0 decodes greedily (deterministic); a positive
temperature samples. Only the newly generated text is returned, stripped.
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass, field

from ..devices import check_device_name, check_precision_name, resolve_device, resolve_dtype
from ..generation import GenerationError, GenerationRequest, Generator
from ..lazy import LazyModule
from ..loading import file_fingerprint, load_once

torch = LazyModule("torch")

#: Weight files whose content identifies a local model (the first one present is fingerprinted).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class LoadedCausalLM:
    """A loaded causal LM with its tokenizer."""

    tokenizer: object
    model: object
    device: object
    # Fast tokenizers are not safe to call from two threads at once.
    tokenizer_lock: threading.Lock = field(default_factory=threading.Lock)


class TransformersGenerator(Generator):
    """Text from a causal LM (``AutoModelForCausalLM``) run in this process.

    ``device`` is "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N"
    or "mps"; ``precision`` is "auto" (bf16 on GPUs that support it, else
    fp16 on CUDA; fp32 elsewhere), "fp32", "fp16" or "bf16".
    ``max_new_tokens`` caps the request's ``max_tokens``; ``revision`` pins a
    hub revision.
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        precision: str = "auto",
        max_new_tokens: int | None = None,
        revision: str | None = None,
    ):
        if not isinstance(model, str) or not model.strip():
            raise GenerationError("model must be a hub id or a local folder, got %r." % (model,))
        if max_new_tokens is not None and (
            isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1
        ):
            raise GenerationError("max_new_tokens must be a positive integer or None, got %r." % (max_new_tokens,))
        if revision is not None and (not isinstance(revision, str) or not revision):
            raise GenerationError("revision must be a non-empty string or None.")
        try:
            self.device_option = check_device_name(device)
            self.precision_option = check_precision_name(precision)
        except ValueError as exc:
            raise GenerationError(str(exc)) from exc
        self.model_name = model
        self.max_new_tokens = max_new_tokens
        self.revision = revision
        self._version: str | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            if os.path.isdir(self.model_name):
                weights = _local_weights_file(self.model_name)
                identity = "%s@sha256:%s" % (
                    os.path.basename(os.path.normpath(self.model_name)),
                    file_fingerprint(weights),
                )
            elif self.revision:
                identity = "%s@%s" % (self.model_name, self.revision)
            else:
                identity = self.model_name
            self._version = "transformers:%s" % identity
        return self._version

    def generate(self, request: GenerationRequest) -> str:
        messages = _check_messages(request.messages)
        try:
            new_tokens = int(request.max_tokens)
            temperature = float(request.temperature)
        except (TypeError, ValueError):
            raise GenerationError("max_tokens must be an integer and temperature a number.") from None
        if new_tokens < 1 or not temperature >= 0:
            raise GenerationError("max_tokens must be >= 1 and temperature >= 0.")
        if self.max_new_tokens is not None:
            new_tokens = min(new_tokens, self.max_new_tokens)
        loaded = self.load()
        with loaded.tokenizer_lock:
            prompt, add_special_tokens = build_prompt(loaded.tokenizer, messages)
            encoded = loaded.tokenizer(prompt, add_special_tokens=add_special_tokens, return_tensors="pt")
        input_ids = encoded["input_ids"].to(loaded.device)
        attention_mask = encoded["attention_mask"].to(loaded.device) if "attention_mask" in encoded else None
        prompt_length = int(input_ids.shape[1])
        limit = _max_positions(loaded.model.config)
        if limit is not None:
            if prompt_length >= limit:
                raise GenerationError(
                    "The prompt has %d tokens; model %r reads at most %d." % (prompt_length, self.model_name, limit)
                )
            new_tokens = min(new_tokens, limit - prompt_length)
        config = _generation_config(loaded.model, loaded.tokenizer, new_tokens, temperature)
        try:
            with torch.inference_mode():
                output = loaded.model.generate(
                    input_ids=input_ids, attention_mask=attention_mask, generation_config=config
                )
        except torch.cuda.OutOfMemoryError as exc:
            raise GenerationError("Out of GPU memory generating with %r: %s" % (self.model_name, exc)) from exc
        except (RuntimeError, ValueError, IndexError) as exc:
            raise GenerationError("Generation with %r failed: %s" % (self.model_name, exc)) from exc
        generated = output[0, prompt_length:]
        with loaded.tokenizer_lock:
            text = loaded.tokenizer.decode(generated.tolist(), skip_special_tokens=True)
        return text.strip()

    def load(self) -> LoadedCausalLM:
        """Load (once per process and configuration) and return the model; later calls are free."""
        try:
            device = resolve_device(self.device_option)
            dtype = self._dtype(device)
        except ValueError as exc:
            raise GenerationError(str(exc)) from exc
        key = ("transformers-causal-lm", self.model_name, self.revision, str(device), str(dtype))
        return load_once(key, lambda: self._build(device, dtype), device.type)

    def _dtype(self, device):
        if self.precision_option == "auto" and device.type == "cuda":
            # Most current LLMs are trained in bf16 and can overflow in fp16.
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return resolve_dtype(self.precision_option, device)

    def _build(self, device, dtype) -> LoadedCausalLM:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_name, revision=self.revision)
            model = AutoModelForCausalLM.from_pretrained(self.model_name, revision=self.revision, dtype=dtype)
        except Exception as exc:
            raise GenerationError("Cannot load causal language model %r: %s" % (self.model_name, exc)) from exc
        model.to(device).eval()
        return LoadedCausalLM(tokenizer=tokenizer, model=model, device=device)

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, self.model_name)


def build_prompt(tokenizer, messages: list[dict[str, str]]) -> tuple[str, bool]:
    """The prompt text for ``messages`` and whether the tokenizer should add its special tokens.

    A chat template already writes the special tokens (BOS...) it needs; the
    plain ``role: content`` fallback lets the tokenizer add them.
    """
    if getattr(tokenizer, "chat_template", None):
        try:
            return _apply_template(tokenizer, messages), False
        except Exception as exc:
            if not any(m["role"] == "system" for m in messages):
                raise GenerationError("The model's chat template failed: %s" % exc) from exc
            # Some templates (older Gemma, Mistral) accept only user/assistant turns.
            try:
                return _apply_template(tokenizer, _fold_system(messages)), False
            except Exception as exc2:
                raise GenerationError("The model's chat template failed: %s" % exc2) from exc2
    return plain_prompt(messages), True


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """``role: content`` lines, then ``assistant:`` for the model to continue."""
    lines = ["%s: %s" % (m["role"], m["content"].strip()) for m in messages]
    lines.append("assistant:")
    return "\n".join(lines)


def _apply_template(tokenizer, messages) -> str:
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if not isinstance(prompt, str):
        raise TypeError("apply_chat_template returned %s, expected text" % type(prompt).__name__)
    return prompt


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    for message in rest:
        if message["role"] == "user":
            message["content"] = system + "\n\n" + message["content"]
            break
    else:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def _check_messages(messages) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise GenerationError("The request has no messages to generate from.")
    checked = []
    for message in messages:
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise GenerationError("Each message must be a dict with string 'role' and 'content'.")
        checked.append({"role": message["role"], "content": message["content"]})
    return checked


def _generation_config(model, tokenizer, new_tokens: int, temperature: float):
    """The model's own generation settings, with our length and decoding mode."""
    config = copy.deepcopy(model.generation_config)
    config.max_new_tokens = new_tokens
    config.max_length = None
    config.min_new_tokens = None
    config.min_length = 0
    if temperature > 0:
        config.do_sample = True
        config.temperature = temperature
    else:
        # Greedy: neutralise the sampling settings a checkpoint may ship (generate() would refill
        # unset ones from the checkpoint and warn that they are ignored).
        config.do_sample = False
        config.num_beams = 1
        config.temperature = 1.0
        config.top_p = 1.0
        config.top_k = 50
        config.typical_p = 1.0
    if config.eos_token_id is None and getattr(tokenizer, "eos_token_id", None) is not None:
        config.eos_token_id = tokenizer.eos_token_id
    if config.pad_token_id is None:
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            eos = config.eos_token_id
            pad = eos[0] if isinstance(eos, (list, tuple)) and eos else eos
        config.pad_token_id = pad
    return config


def _max_positions(config) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _local_weights_file(folder: str) -> str:
    for name in WEIGHT_FILES + ("config.json",):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise GenerationError("No weights or config.json found in %r." % folder)
