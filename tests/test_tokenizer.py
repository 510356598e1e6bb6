"""The SentencePiece tokenizer: quiet training, round trips, padding, masks, truncation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymuse.data.shapes import sample_text
from tinymuse.text.tokenizer import EOS_ID, PAD_ID, OutOfVocabularyError, Tokenizer


def shapes_captions(n, seed=0, split="train"):
    rng = np.random.default_rng(seed)
    return [sample_text(rng, split)[1] for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(shapes_captions(3000), vocab_size=256)


def test_training_is_quiet(capfd):
    Tokenizer.train(shapes_captions(300, seed=1), vocab_size=128)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), split=st.sampled_from(["train", "heldout", "all"]))
def test_encode_decode_round_trips_and_ids_stay_in_range(tokenizer, seed, split):
    caption = sample_text(np.random.default_rng(seed), split)[1]
    ids = tokenizer.encode(caption)
    assert ids[-1] == EOS_ID
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert PAD_ID not in ids
    assert tokenizer.decode(ids) == caption


def test_shapes_words_become_single_pieces(tokenizer):
    assert tokenizer.pieces("two small red circles") == ["▁two", "▁small", "▁red", "▁circles"]


def test_batches_of_mixed_lengths_are_padded_and_masked(tokenizer):
    captions = ["a red circle", "the letter K in blue on a black background", "two blue squares"]
    ids, mask = tokenizer.encode_batch(captions, max_length=16)
    assert ids.shape == mask.shape == (3, 16)
    assert ids.dtype == np.int32 and mask.dtype == bool
    for row, caption in enumerate(captions):
        tokens = tokenizer.encode(caption)
        n = len(tokens)
        assert mask[row].sum() == n and mask[row, :n].all()  # real tokens first, then padding
        np.testing.assert_array_equal(ids[row, :n], tokens)
        assert np.all(ids[row, n:] == PAD_ID)
    assert mask[1].sum() > mask[0].sum()
    assert tokenizer.decode_batch(ids) == captions
    empty_ids, empty_mask = tokenizer.encode_batch([], max_length=5)
    assert empty_ids.shape == empty_mask.shape == (0, 5)


def test_long_captions_are_truncated_with_a_warning(tokenizer):
    long = "a red circle " * 10
    with pytest.warns(UserWarning, match="truncated"):
        ids, mask = tokenizer.encode_batch([long.strip(), "a red circle"], max_length=8)
    assert mask[0].all() and ids[0, -1] == EOS_ID
    assert tokenizer.decode(ids[0]) == "a red circle a red circle a"
    with pytest.raises(TypeError, match="list of captions"):
        tokenizer.encode_batch("a red circle")


def test_save_and_load(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "nested" / "tokenizer.model")
    loaded = Tokenizer.load(path)
    captions = shapes_captions(20, seed=2)
    np.testing.assert_array_equal(
        loaded.encode_batch(captions)[0], tokenizer.encode_batch(captions)[0]
    )
    assert loaded.vocab_size == tokenizer.vocab_size and loaded.known_words == tokenizer.known_words
    with pytest.raises(FileNotFoundError, match="Tokenizer.train"):
        Tokenizer.load(tmp_path / "missing.model")


def test_unknown_words_are_named(tokenizer):
    tokenizer.check_words("a small green triangle above a red square")
    with pytest.raises(OutOfVocabularyError, match="'hexagon'") as info:
        tokenizer.check_words("a red hexagon")
    assert "circle" in str(info.value)
    assert "letter" not in str(info.value).split("known words")[0], \
        "the tokenizer's error says what the tokenizer knows, not the shapes grammar's rules"
    long = "a red hexagon " + "circle " * 200
    with pytest.raises(OutOfVocabularyError) as info:
        tokenizer.check_words(long)
    assert long not in str(info.value), "a long prompt is not echoed whole"
    with pytest.raises(ValueError, match="no captions"):
        Tokenizer.train(["", "  "])
