"""``graphc.preprocessing.sequence`` (``pad_sequences``, ``TimeseriesGenerator``) and
``graphc.preprocessing.text`` (``Tokenizer``), against the results Keras documents and
gives."""
import numpy as np
import pytest

from graphc.errors import DataError
from graphc.preprocessing.sequence import TimeseriesGenerator, pad_sequences
from graphc.preprocessing.text import (Tokenizer, hashing_trick, text_to_word_sequence,
                                       tokenizer_from_json)

SEQS = [[1], [2, 3], [4, 5, 6]]


# ---------------------------------------------------------------------------------------
# pad_sequences: the cases of Keras' docstring, then the corners

@pytest.mark.parametrize("kwargs,expected", [
    ({}, [[0, 0, 1], [0, 2, 3], [4, 5, 6]]),
    ({"value": -1}, [[-1, -1, 1], [-1, 2, 3], [4, 5, 6]]),
    ({"padding": "post"}, [[1, 0, 0], [2, 3, 0], [4, 5, 6]]),
    ({"maxlen": 2}, [[0, 1], [2, 3], [5, 6]]),
    ({"maxlen": 2, "truncating": "post"}, [[0, 1], [2, 3], [4, 5]]),
    ({"maxlen": 4, "padding": "post", "truncating": "post"},
     [[1, 0, 0, 0], [2, 3, 0, 0], [4, 5, 6, 0]]),
])
def test_pad_sequences_keras_cases(kwargs, expected):
    out = pad_sequences(SEQS, **kwargs)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


def test_pad_sequences_dtype_and_truncation_of_floats():
    out = pad_sequences([[0.5, 1.5, 2.5], [3.5]], maxlen=2, dtype="float32", value=-1.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1.5, 2.5], [-1.0, 3.5]])
    # The default int32 truncates float values toward zero, as numpy's cast (and Keras).
    np.testing.assert_array_equal(pad_sequences([[1.7, 2.2]]), [[1, 2]])


def test_pad_sequences_multidimensional_elements_and_empty_sequences():
    seqs = [[[1, 2], [3, 4]], [], [[5, 6]]]
    out = pad_sequences(seqs, maxlen=3)
    assert out.shape == (3, 3, 2)
    np.testing.assert_array_equal(out[0], [[0, 0], [1, 2], [3, 4]])
    np.testing.assert_array_equal(out[1], np.zeros((3, 2)))
    np.testing.assert_array_equal(out[2], [[0, 0], [0, 0], [5, 6]])
    with pytest.raises(DataError, match="position 1"):
        pad_sequences([[[1, 2]], [[1, 2, 3]]])


def test_pad_sequences_numpy_inputs_strings_and_edges():
    out = pad_sequences([np.array([1, 2, 3]), np.array([4])], maxlen=2)
    np.testing.assert_array_equal(out, [[2, 3], [0, 4]])
    words = pad_sequences([["a", "b"], ["c"]], dtype=object, value="<pad>")
    assert words.tolist() == [["a", "b"], ["<pad>", "c"]]
    with pytest.raises(DataError, match="dtype=object"):
        pad_sequences([["a"]], value="x")
    assert pad_sequences(SEQS, maxlen=0).shape == (3, 0)
    assert pad_sequences([]).shape == (0, 0)
    assert pad_sequences([], maxlen=5).shape == (0, 5)


def test_pad_sequences_errors():
    with pytest.raises(DataError, match="'pre' or 'post'"):
        pad_sequences(SEQS, padding="middle")
    with pytest.raises(DataError, match="'pre' or 'post'"):
        pad_sequences(SEQS, truncating="both")
    with pytest.raises(DataError, match="sequence 1 is not one"):
        pad_sequences([[1], 5])
    with pytest.raises(DataError, match="maxlen"):
        pad_sequences(SEQS, maxlen=-1)


# ---------------------------------------------------------------------------------------
# TimeseriesGenerator (Keras' documented example)

def test_timeseries_generator_keras_example():
    data = np.array([[i] for i in range(50)])
    targets = np.array([[i] for i in range(50)])
    gen = TimeseriesGenerator(data, targets, length=10, sampling_rate=2, batch_size=2)
    assert len(gen) == 20
    x, y = gen[0]
    np.testing.assert_array_equal(x, [[[0], [2], [4], [6], [8]], [[1], [3], [5], [7], [9]]])
    np.testing.assert_array_equal(y, [[10], [11]])
    _, y_last = gen[len(gen) - 1]
    np.testing.assert_array_equal(y_last, [[48], [49]])
    xr, _ = TimeseriesGenerator(data, targets, length=10, sampling_rate=2, batch_size=2,
                                reverse=True)[0]
    np.testing.assert_array_equal(xr, x[:, ::-1])
    with pytest.raises(DataError, match="same length"):
        TimeseriesGenerator(data, targets[:-1], length=3)
    with pytest.raises(DataError, match="start_index"):
        TimeseriesGenerator(data, targets, length=60)


# ---------------------------------------------------------------------------------------
# Tokenizer

def test_tokenizer_index_sequences_and_matrix():
    texts = ["The cat sat on the mat.", "The dog ate the cat!"]
    tok = Tokenizer()
    tok.fit_on_texts(texts)
    # By frequency (the 4, cat 2), ties in first-seen order; index 0 is never a word.
    assert tok.word_index == {"the": 1, "cat": 2, "sat": 3, "on": 4, "mat": 5, "dog": 6,
                              "ate": 7}
    assert tok.document_count == 2 and tok.word_docs["the"] == 2
    assert tok.texts_to_sequences(["the cat and the bird"]) == [[1, 2, 1]]
    assert tok.sequences_to_texts([[1, 2, 6]]) == ["the cat dog"]
    m = tok.texts_to_matrix(["the cat the"], mode="count")
    assert m.shape == (1, 8) and m[0, 1] == 2 and m[0, 2] == 1 and m.sum() == 3
    np.testing.assert_allclose(tok.texts_to_matrix(["the cat the"], mode="freq")[0, 1], 2 / 3)
    tfidf = tok.texts_to_matrix(["cat"], mode="tfidf")
    np.testing.assert_allclose(tfidf[0, 2], np.log(1 + 2 / 3))


def test_tokenizer_num_words_oov_and_json():
    tok = Tokenizer(num_words=3, oov_token="<OOV>")
    tok.fit_on_texts(["a a a b b c", "a b d"])
    assert tok.word_index["<OOV>"] == 1 and tok.word_index["a"] == 2
    # Only indices below num_words survive; the rest become the OOV index.
    assert tok.texts_to_sequences(["a b c zzz"]) == [[2, 1, 1, 1]]
    assert tok.texts_to_matrix(["a b"]).shape == (1, 3)
    back = tokenizer_from_json(tok.to_json())
    assert back.word_index == tok.word_index
    assert back.texts_to_sequences(["a b c"]) == tok.texts_to_sequences(["a b c"])
    with pytest.raises(DataError, match="list of texts"):
        tok.fit_on_texts("a single string")


def test_text_helpers():
    assert text_to_word_sequence("Hello, World!  Again") == ["hello", "world", "again"]
    h = hashing_trick("one two one", 10, hash_function="md5")
    assert h[0] == h[2] and all(1 <= v < 10 for v in h)
    chars = Tokenizer(char_level=True)
    chars.fit_on_texts(["aab"])
    assert chars.texts_to_sequences(["ba"]) == [[2, 1]]
