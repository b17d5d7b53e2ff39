"""``graphc.preprocessing.text``: Keras 2's text preprocessing — ``Tokenizer`` (a word
index fitted on texts; texts to integer sequences or bag-of-words matrices),
``text_to_word_sequence``, ``one_hot`` and ``hashing_trick``.

Same signatures, defaults and results as ``keras.preprocessing.text``: index 0 is never a
word (it is the padding value of ``pad_sequences``), the most frequent word gets index 1
(or 2 when an ``oov_token`` takes 1), ties keep first-seen order, and ``num_words`` keeps
only indices below it when converting.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict, defaultdict

import numpy as np

from graphc.errors import DataError

__all__ = ["text_to_word_sequence", "one_hot", "hashing_trick", "Tokenizer",
           "tokenizer_from_json"]

DEFAULT_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'


def text_to_word_sequence(text, filters=DEFAULT_FILTERS, lower=True, split=" "):
    """The words of ``text``: lower-cased (``lower``), every character of ``filters``
    replaced by ``split``, split on ``split``, empty pieces dropped."""
    if lower:
        text = text.lower()
    text = text.translate(str.maketrans({c: split for c in filters}))
    return [w for w in text.split(split) if w]


def hashing_trick(text, n, hash_function=None, filters=DEFAULT_FILTERS, lower=True,
                  split=" "):
    """Each word of ``text`` as an index in [1, n) by hashing. ``hash_function``: None
    (Python's ``hash``: differs between processes unless PYTHONHASHSEED is set, as in
    Keras), 'md5' (stable), or a callable taking a word."""
    if hash_function is None:
        hash_function = hash
    elif hash_function == "md5":
        def hash_function(w):
            return int(hashlib.md5(w.encode()).hexdigest(), 16)
    words = text_to_word_sequence(text, filters=filters, lower=lower, split=split)
    return [(hash_function(w) % (n - 1) + 1) for w in words]


def one_hot(text, n, filters=DEFAULT_FILTERS, lower=True, split=" "):
    """``hashing_trick`` with Python's ``hash`` (Keras' ``one_hot``: despite the name,
    integer indices in [1, n), not one-hot vectors)."""
    return hashing_trick(text, n, hash_function=hash, filters=filters, lower=lower,
                         split=split)


class Tokenizer:
    """Vectorize texts: ``fit_on_texts`` builds ``word_index`` (word → index, most
    frequent first, from 1); ``texts_to_sequences`` maps texts to index lists;
    ``texts_to_matrix`` to ``(n, num_words)`` 'binary'/'count'/'freq'/'tfidf' rows.

    ``num_words``: keep only the ``num_words - 1`` most frequent words when converting
    (the index itself keeps every word); ``oov_token``: index 1, used for words not kept;
    ``char_level``: every character is a token. A list of tokens in place of a text is
    used as it is.
    """

    def __init__(self, num_words=None, filters=DEFAULT_FILTERS, lower=True, split=" ",
                 char_level=False, oov_token=None, document_count=0, **kwargs):
        if "nb_words" in kwargs:      # Keras 1 name
            num_words = kwargs.pop("nb_words")
        kwargs.pop("analyzer", None)
        if kwargs:
            raise TypeError(f"Tokenizer got unexpected keyword argument(s): "
                            f"{', '.join(sorted(kwargs))}")
        self.word_counts = OrderedDict()
        self.word_docs = defaultdict(int)
        self.filters = filters
        self.split = split
        self.lower = lower
        self.num_words = num_words
        self.document_count = document_count
        self.char_level = char_level
        self.oov_token = oov_token
        self.index_docs = defaultdict(int)
        self.word_index = {}
        self.index_word = {}

    def _tokens(self, text):
        if self.char_level or isinstance(text, list):
            if self.lower:
                text = [t.lower() for t in text] if isinstance(text, list) else text.lower()
            return text
        return text_to_word_sequence(text, self.filters, self.lower, self.split)

    def fit_on_texts(self, texts):
        """Update the word counts and rebuild ``word_index`` from ``texts`` (strings, or
        lists of tokens)."""
        if isinstance(texts, str):
            raise DataError("fit_on_texts expects a list of texts, not one string (wrap it "
                            "in a list)")
        for text in texts:
            self.document_count += 1
            seq = self._tokens(text)
            for w in seq:
                self.word_counts[w] = self.word_counts.get(w, 0) + 1
            for w in set(seq):
                self.word_docs[w] += 1
        # Stable sort: words with equal counts keep the order they were first seen in.
        ranked = sorted(self.word_counts.items(), key=lambda wc: wc[1], reverse=True)
        vocab = ([self.oov_token] if self.oov_token is not None else []) + \
            [w for w, _ in ranked]
        self.word_index = {w: i for i, w in enumerate(vocab, start=1)}   # 0 is padding
        self.index_word = {i: w for w, i in self.word_index.items()}
        self.index_docs = defaultdict(int)
        for w, c in self.word_docs.items():
            self.index_docs[self.word_index[w]] = c

    def fit_on_sequences(self, sequences):
        """Update the document frequencies (for 'tfidf') from index sequences."""
        self.document_count += len(sequences)
        for seq in sequences:
            for i in set(seq):
                self.index_docs[i] += 1

    def texts_to_sequences(self, texts):
        """Each text as a list of word indices (unknown or dropped words are skipped, or
        become the ``oov_token``'s index)."""
        return list(self.texts_to_sequences_generator(texts))

    def texts_to_sequences_generator(self, texts):
        if isinstance(texts, str):
            raise DataError("texts_to_sequences expects a list of texts, not one string "
                            "(wrap it in a list)")
        num_words = self.num_words
        oov = self.word_index.get(self.oov_token) if self.oov_token is not None else None
        for text in texts:
            vect = []
            for w in self._tokens(text):
                i = self.word_index.get(w)
                if i is not None and not (num_words and i >= num_words):
                    vect.append(i)
                elif oov is not None:
                    vect.append(oov)
            yield vect

    def sequences_to_texts(self, sequences):
        """Index sequences back to space-joined texts."""
        return list(self.sequences_to_texts_generator(sequences))

    def sequences_to_texts_generator(self, sequences):
        num_words = self.num_words
        oov = self.word_index.get(self.oov_token) if self.oov_token is not None else None
        for seq in sequences:
            words = []
            for num in seq:
                word = self.index_word.get(num)
                if word is not None and not (num_words and num >= num_words):
                    words.append(word)
                elif oov is not None:
                    words.append(self.index_word[oov])
            yield " ".join(words)

    def texts_to_matrix(self, texts, mode="binary"):
        """``texts_to_sequences`` then ``sequences_to_matrix``."""
        return self.sequences_to_matrix(self.texts_to_sequences(texts), mode=mode)

    def sequences_to_matrix(self, sequences, mode="binary"):
        """A ``(len(sequences), num_words)`` float64 matrix: per row, 'binary' (1 where the
        index occurs), 'count', 'freq' (count / length) or 'tfidf'."""
        if mode not in ("binary", "count", "freq", "tfidf"):
            raise DataError(f"unknown vectorization mode {mode!r}; expected 'binary', "
                            f"'count', 'freq' or 'tfidf'")
        if self.num_words:
            num_words = self.num_words
        elif self.word_index:
            num_words = len(self.word_index) + 1
        else:
            raise DataError("Specify a dimension (`num_words` argument), or fit on some text "
                            "data first.")
        if mode == "tfidf" and not self.document_count:
            raise DataError("Fit the Tokenizer on some data before using tfidf mode.")
        x = np.zeros((len(sequences), num_words))
        for i, seq in enumerate(sequences):
            if not len(seq):
                continue
            counts = defaultdict(int)
            for j in seq:
                if j < num_words:
                    counts[j] += 1
            for j, c in counts.items():
                if mode == "count":
                    x[i, j] = c
                elif mode == "freq":
                    x[i, j] = c / len(seq)
                elif mode == "binary":
                    x[i, j] = 1
                else:
                    tf = 1 + np.log(c)
                    idf = np.log(1 + self.document_count / (1 + self.index_docs.get(j, 0)))
                    x[i, j] = tf * idf
        return x

    def get_config(self):
        return {
            "num_words": self.num_words, "filters": self.filters, "lower": self.lower,
            "split": self.split, "char_level": self.char_level, "oov_token": self.oov_token,
            "document_count": self.document_count,
            "word_counts": json.dumps(self.word_counts),
            "word_docs": json.dumps(self.word_docs),
            "index_docs": json.dumps(self.index_docs),
            "index_word": json.dumps(self.index_word),
            "word_index": json.dumps(self.word_index),
        }

    def to_json(self, **kwargs):
        """The tokenizer as a JSON string (``tokenizer_from_json`` reads it back)."""
        return json.dumps({"class_name": self.__class__.__name__,
                           "config": self.get_config()}, **kwargs)


def tokenizer_from_json(json_string):
    """A ``Tokenizer`` from ``Tokenizer.to_json()``'s output."""
    config = json.loads(json_string).get("config")
    word_counts = json.loads(config.pop("word_counts"), object_pairs_hook=OrderedDict)
    word_docs = json.loads(config.pop("word_docs"))
    index_docs = {int(k): v for k, v in json.loads(config.pop("index_docs")).items()}
    index_word = {int(k): v for k, v in json.loads(config.pop("index_word")).items()}
    word_index = json.loads(config.pop("word_index"))
    tok = Tokenizer(**config)
    tok.word_counts = word_counts
    tok.word_docs = defaultdict(int, word_docs)
    tok.index_docs = defaultdict(int, index_docs)
    tok.word_index = word_index
    tok.index_word = index_word
    return tok
