"""TransformersGenerator with tiny random causal LMs saved to disk, loaded through the production path."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from ragrec_django.ml.generation import GenerationError, GenerationRequest
from ragrec_django.ml.generators import TransformersGenerator
from ragrec_django.ml.generators.local_transformers import build_prompt, plain_prompt
from ragrec_django.ml.loading import loaded_keys

MESSAGES = [
    {"role": "system", "content": "write a product description"},
    {"role": "user", "content": "the blue linen shirt"},
]


def request(max_tokens=6, temperature=0.0, messages=MESSAGES) -> GenerationRequest:
    return GenerationRequest(task="description", messages=messages, max_tokens=max_tokens, temperature=temperature)


def reference_greedy(folder: str, prompt: str, add_special_tokens: bool, steps: int) -> str:
    """Greedy decoding written out by hand: argmax of the full forward pass, step by step."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tokenizer(prompt, add_special_tokens=add_special_tokens, return_tensors="pt")["input_ids"]
    start = ids.shape[1]
    with torch.no_grad():
        for _ in range(steps):
            next_id = model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return tokenizer.decode(ids[0, start:].tolist(), skip_special_tokens=True).strip()


@pytest.fixture
def own_lm_dir(tiny_lm_dir, tmp_path):
    """A private copy of the tiny chat LM: its first load happens inside the test."""
    return shutil.copytree(tiny_lm_dir, tmp_path / "own-tiny-lm")


def test_chat_template_path_greedy_new_text_only_and_loaded_once(own_lm_dir, monkeypatch):
    folder = str(own_lm_dir)
    loads = []
    original = transformers.AutoModelForCausalLM.from_pretrained

    def counting(*args, **kwargs):
        loads.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", counting)
    generator = TransformersGenerator(model=folder, device="cpu")

    first = generator.generate(request(max_tokens=6))
    second = generator.generate(request(max_tokens=6))
    third = TransformersGenerator(model=folder, device="cpu").generate(request(max_tokens=6))

    assert first == second == third  # greedy is deterministic
    assert len(first.split()) == 6  # one word per token, exactly the requested number of new tokens
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", original)
    assert first == reference_greedy(folder, prompt, add_special_tokens=False, steps=6)  # no prompt echoed
    assert loads == [folder]  # one load per process and configuration
    assert [key for key in loaded_keys() if folder in key] == [
        ("transformers-causal-lm", folder, None, "cpu", "torch.float32")
    ]


def test_plain_prompt_when_the_tokenizer_has_no_chat_template(tiny_plain_lm_dir):
    generator = TransformersGenerator(model=tiny_plain_lm_dir, device="cpu", precision="fp32")
    text = generator.generate(request(max_tokens=5))
    prompt = plain_prompt(MESSAGES)
    assert prompt == "system: write a product description\nuser: the blue linen shirt\nassistant:"
    assert text == reference_greedy(tiny_plain_lm_dir, prompt, add_special_tokens=True, steps=5)
    assert len(text.split()) == 5


def test_max_new_tokens_caps_the_request(tiny_lm_dir):
    generator = TransformersGenerator(model=tiny_lm_dir, device="cpu", max_new_tokens=3)
    assert len(generator.generate(request(max_tokens=50)).split()) == 3
    assert len(generator.generate(request(max_tokens=2)).split()) == 2


def test_sampling_with_a_temperature(tiny_lm_dir):
    generator = TransformersGenerator(model=tiny_lm_dir, device="cpu")
    torch.manual_seed(0)
    texts = {generator.generate(request(max_tokens=8, temperature=1.5)) for _ in range(4)}
    assert all(len(text.split()) == 8 for text in texts)
    assert len(texts) > 1  # sampled, not greedy


def test_a_prompt_longer_than_the_model_reads_is_an_error(tiny_lm_dir):
    long = [{"role": "user", "content": " ".join(["shirt"] * 80)}]  # the tiny model reads 64 positions
    with pytest.raises(GenerationError, match="reads at most 64"):
        TransformersGenerator(model=tiny_lm_dir, device="cpu").generate(request(messages=long))


def test_new_tokens_shrink_to_fit_the_context(tiny_lm_dir):
    messages = [{"role": "user", "content": " ".join(["shirt"] * 55)}]
    prompt = AutoTokenizer.from_pretrained(tiny_lm_dir).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    assert len(prompt.split()) == 58  # <user>, 55 words, <end>, <assistant>
    text = TransformersGenerator(model=tiny_lm_dir, device="cpu").generate(request(max_tokens=20, messages=messages))
    assert len(text.split()) == 64 - 58


def test_system_role_is_folded_into_the_user_turn_for_templates_that_refuse_it(tiny_lm_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<{{ m['role'] }}> {{ m['content'] }} <end> {% endfor %}<assistant>"
    )
    prompt, add_special = build_prompt(tokenizer, MESSAGES)
    assert prompt == "<user> write a product description\n\nthe blue linen shirt <end> <assistant>"
    assert add_special is False


def test_version_fingerprints_local_weights(tiny_lm_dir, tiny_plain_lm_dir):
    version = TransformersGenerator(model=tiny_lm_dir).version
    assert re.fullmatch(r"transformers:tiny-chat-lm@sha256:[0-9a-f]{16}", version)
    assert TransformersGenerator(model=tiny_lm_dir, device="cpu").version == version
    assert TransformersGenerator(model=tiny_plain_lm_dir).version != version  # other weights
    assert (
        TransformersGenerator(model="Qwen/Qwen2.5-0.5B-Instruct").version == "transformers:Qwen/Qwen2.5-0.5B-Instruct"
    )
    assert TransformersGenerator(model="org/m", revision="abc123").version == "transformers:org/m@abc123"


@pytest.mark.parametrize(
    "options",
    [{"model": ""}, {"device": "gpu"}, {"precision": "int4"}, {"max_new_tokens": 0}, {"revision": ""}],
)
def test_bad_options_are_rejected(options):
    with pytest.raises(GenerationError):
        TransformersGenerator(**{"model": "org/m", **options})


def test_a_model_that_cannot_load_is_a_generation_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a folder, but no model in it
    with pytest.raises(GenerationError, match="Cannot load causal language model"):
        TransformersGenerator(model=str(tmp_path), device="cpu").generate(request())


def test_bad_requests_are_rejected(tiny_lm_dir):
    generator = TransformersGenerator(model=tiny_lm_dir, device="cpu")
    with pytest.raises(GenerationError):
        generator.generate(request(messages=[]))
    with pytest.raises(GenerationError):
        generator.generate(request(max_tokens=0))


def test_greedy_ignores_sampling_defaults_shipped_with_the_checkpoint(tmp_path):
    import json

    from ragrec_django.ml.generators.testing import make_tiny_causal_lm

    folder = make_tiny_causal_lm(tmp_path / "sampling-defaults", seed=2)
    path = tmp_path / "sampling-defaults" / "generation_config.json"
    config = json.loads(path.read_text())
    config.update({"do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 20})
    path.write_text(json.dumps(config))

    generator = TransformersGenerator(model=folder, device="cpu")
    text = generator.generate(request(max_tokens=6))
    assert text == generator.generate(request(max_tokens=6))
    prompt = AutoTokenizer.from_pretrained(folder).apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=False
    )
    assert text == reference_greedy(folder, prompt, add_special_tokens=False, steps=6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_auto_runs_on_the_gpu(tiny_lm_dir):
    generator = TransformersGenerator(model=tiny_lm_dir)  # device and precision "auto"
    loaded = generator.load()
    assert loaded.device.type == "cuda"
    assert next(loaded.model.parameters()).dtype in (torch.bfloat16, torch.float16)
    text = generator.generate(request(max_tokens=6))
    assert len(text.split()) == 6 and text == generator.generate(request(max_tokens=6))
