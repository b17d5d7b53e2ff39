"""The data adapter: structures → per-input arrays, dtypes, checks and messages, class
weights, and the epoch semantics of arrays, Sequences and generators."""
import warnings

import numpy as np
import pytest

from graphc.errors import DataError, ShapeError
from graphc.frontend.seeding import set_random_seed
from graphc.ir.dtypes import DType
from graphc.runtime import data


class Sym:
    def __init__(self, name, shape, dtype="float32"):
        self.name, self.shape, self.dtype = name, shape, dtype


class Model:
    def __init__(self, inputs=(("x", (None, 3)),), outputs=("y",), dtypes=None):
        self.inputs = [Sym(n, s, (dtypes or {}).get(n, DType.f32)) for n, s in inputs]
        self.outputs = [Sym(n, (None, 1)) for n in outputs]
        self.output_names = list(outputs)
        self.loss = "mse"


def spec(**kw):
    return data.ModelSpec.from_model(Model(**kw))


TWO = dict(inputs=(("a", (None, 2)), ("b", (None, 4))))


def test_spec_reads_model():
    s = spec(**TWO, outputs=("o1", "o2"))
    assert s.input_names == ["a", "b"] and s.input_shapes == [(None, 2), (None, 4)]
    assert s.input_dtypes == [np.float32, np.float32]
    assert s.output_names == ["o1", "o2"] and s.n_outputs == 2


def test_spec_tolerates_missing_attributes():
    s = data.ModelSpec.from_model(object())
    assert s.input_names is None and s.output_names is None
    xs = data.standardize_x([np.zeros((2, 1)), np.zeros((2, 5))], s)
    assert len(xs) == 2


def test_structures_for_two_inputs():
    s = spec(**TWO)
    a, b = np.zeros((5, 2)), np.ones((5, 4))
    for x in ([a, b], (a, b), {"b": b, "a": a}):
        xs = data.standardize_x(x, s)
        assert [t.shape for t in xs] == [(5, 2), (5, 4)]
    with pytest.raises(DataError, match=r"unknown key\(s\) 'c'; the model's inputs are "
                                        r"named 'a', 'b'"):
        data.standardize_x({"a": a, "b": b, "c": b}, s)


def test_single_input_lists():
    s = spec()
    assert data.standardize_x([[1, 2, 3], [4, 5, 6]], s)[0].shape == (2, 3)
    assert data.standardize_x([np.zeros((4, 3))], s)[0].shape == (4, 3)
    rows = [np.arange(3.0) for _ in range(5)]             # list comprehension of rows
    assert data.standardize_x(rows, s)[0].shape == (5, 3)
    with pytest.raises(DataError, match=r"1 input \('x'\) but x is a list of 2 arrays"):
        data.standardize_x([np.zeros((4, 3)), np.zeros((4, 3))], s)


def test_column_input_from_1d():
    s = spec(inputs=(("x", (None, 1)),))
    assert data.standardize_x([1, 2, 3], s)[0].shape == (3, 1)


def test_labels_expanded_for_single_unit_output():
    s = spec()                                     # output shape (None, 1)
    assert data.standardize_y(np.array([0, 1, 1]), s)[0].shape == (3, 1)
    assert data.standardize_y(np.zeros((3, 1)), s)[0].shape == (3, 1)
    m = Model()
    m.outputs[0].shape = (None, 10)                # sparse labels for a softmax: kept
    s10 = data.ModelSpec.from_model(m)
    assert data.standardize_y(np.array([0, 9, 3]), s10)[0].shape == (3,)


def test_dtypes():
    s = spec()
    x = data.standardize_x(np.zeros((2, 3), np.float64), s)[0]
    assert x.dtype == np.float32
    x = data.standardize_x(np.zeros((2, 3), np.uint8), s)[0]
    assert x.dtype == np.float32
    s_int = spec(inputs=(("tok", (None, 5)),), dtypes={"tok": DType.i32})
    assert data.standardize_x(np.zeros((2, 5), np.int64), s_int)[0].dtype == np.int32
    assert data.standardize_y(np.array([0, 1]), s)[0].dtype == np.int64
    assert data.standardize_y(np.array([0.0, 1.0]), s)[0].dtype == np.float32
    assert data.standardize_y(np.array([True, False]), s)[0].dtype == np.float32
    f = np.asfortranarray(np.zeros((4, 3), np.float32))
    assert data.standardize_x(f, s)[0].flags.c_contiguous


def test_non_numeric_and_ragged():
    s = spec()
    with pytest.raises(DataError, match="non-numeric"):
        data.standardize_x(np.array([["a", "b", "c"]]), s)
    with pytest.raises(DataError, match="could not be converted"):
        data.standardize_x([[1, 2, 3], [1, 2]], s)


def test_check_inputs_fallback_message():
    s = spec()
    with pytest.raises(ShapeError, match=r"input 'x' expects arrays of shape \(None, 3\).*"
                                         r"x has shape \(3, 8\)"):
        data.check_inputs(s, [np.zeros((3, 8))])
    data.check_inputs(s, [np.zeros((7, 3))])


def test_check_counts_messages():
    s = spec(**TWO, outputs=("o1", "o2"))
    a, b = np.zeros((5, 2)), np.zeros((4, 4))
    with pytest.raises(DataError, match="x for input 'a' has 5 samples but x for input 'b' "
                                        "has 4"):
        data.check_counts([a, b], [], [], s)
    with pytest.raises(DataError, match="y for output 'o2' of|y for output 'o2' has 3"):
        data.check_counts([a, a], [np.zeros(5), np.zeros(3)], [None, None], s)


def test_sample_weight_forms():
    s = spec(outputs=("o1", "o2"))
    w = np.ones(4)
    one = data.standardize_sample_weight(w, s, 2)
    assert one[0] is one[1] and one[0].dtype == np.float32
    per = data.standardize_sample_weight({"o2": w}, s, 2)
    assert per[0] is None and per[1].shape == (4,)
    lst = data.standardize_sample_weight([w, None], s, 2)
    assert lst[1] is None
    with pytest.raises(DataError, match="unknown key"):
        data.standardize_sample_weight({"zz": w}, s, 2)


def test_class_weight_to_sample_weights():
    cw = {0: 0.5, 2: 3.0}
    np.testing.assert_array_equal(
        data.class_weight_to_sample_weights(np.array([0, 1, 2]), cw), [0.5, 1, 3])
    np.testing.assert_array_equal(
        data.class_weight_to_sample_weights(np.array([[0], [2]]), cw), [0.5, 3])
    np.testing.assert_array_equal(
        data.class_weight_to_sample_weights(np.eye(3), cw), [0.5, 1, 3])
    np.testing.assert_array_equal(                              # float 0/1 labels
        data.class_weight_to_sample_weights(np.array([0.0, 1.0]), {1: 4}), [1, 4])
    with pytest.raises(DataError, match="class_weight"):
        data.class_weight_to_sample_weights(np.array([0]), [1, 2])


def test_class_weight_multiplies_sample_weight():
    s = spec()
    ad = data.make_adapter(np.zeros((3, 3)), np.array([0, 1, 1]), np.array([1.0, 2.0, 3.0]),
                           spec=s, class_weight={1: 10.0})
    np.testing.assert_array_equal(ad.sws[0], [1, 20, 30])


# --- adapters and epochs -------------------------------------------------------------------

def arr_adapter(n=10, bs=4, shuffle=False):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return data.make_adapter(x, np.arange(n), spec=spec(), batch_size=bs, shuffle=shuffle)


def first_ids(batches):
    return [int(b.xs[0][0, 0]) // 3 for b in batches]


def test_array_adapter_batches_and_views():
    ad = arr_adapter()
    bs = list(ad.iterate())
    assert [b.size for b in bs] == [4, 4, 2]
    assert np.shares_memory(bs[0].xs[0], ad.xs[0])          # unshuffled: views, no copies
    assert ad.num_batches == 3


def test_batch_size_from_steps():
    ad = data.make_adapter(np.zeros((10, 3)), np.zeros(10), spec=spec(), steps=3)
    assert ad.batch_size == 4
    with pytest.raises(DataError, match="batch_size"):
        data.make_adapter(np.zeros((10, 3)), np.zeros(10), spec=spec(), batch_size=0)


def test_shuffle_uses_global_seed():
    set_random_seed(5)
    a = [int(b.ys[0].flat[0]) for b in arr_adapter(shuffle=True).iterate()]
    set_random_seed(5)
    b = [int(b.ys[0].flat[0]) for b in arr_adapter(shuffle=True).iterate()]
    assert a == b


def test_split_is_last_fraction_and_shares_weights():
    x = np.arange(10.0)[:, None].repeat(3, 1)
    w = np.arange(10.0)
    ad = data.make_adapter(x, np.arange(10), w, spec=spec(), batch_size=4)
    tr, va = ad.split(0.3, validation_batch_size=2)
    assert tr.num_samples == 7 and va.num_samples == 3 and va.batch_size == 2
    np.testing.assert_array_equal(va.sws[0], [7, 8, 9])
    assert va.shuffle is False


def test_epoch_iterator_arrays_cycle_with_steps():
    it = data.EpochIterator(arr_adapter(n=10, bs=4), steps=2, cycle=True)
    e = [first_ids(b for _, b in it.epoch()) for _ in range(3)]
    assert e == [[0, 4], [8, 0], [4, 8]]           # one stream, new pass when one ends


def test_epoch_iterator_eval_restarts_and_caps():
    it = data.EpochIterator(arr_adapter(n=10, bs=4), steps=2, cycle=False)
    assert [first_ids(b for _, b in it.epoch()) for _ in range(2)] == [[0, 4], [0, 4]]
    it = data.EpochIterator(arr_adapter(n=10, bs=4), steps=7, cycle=False)
    assert it.steps == 3 and len(list(it.epoch())) == 3


def test_generator_stream_and_peek():
    pulled = []

    def gen():
        for i in range(5):
            pulled.append(i)
            yield np.full((2, 3), i), np.zeros(2)

    ad = data.make_adapter(gen(), spec=spec())
    it = data.EpochIterator(ad, steps=2, cycle=True)
    it.ensure_not_empty()
    assert pulled == [0]
    assert [int(b.xs[0][0, 0]) for _, b in it.epoch()] == [0, 1]
    assert it.has_more() and pulled == [0, 1, 2]                 # peeked one ahead
    assert [int(b.xs[0][0, 0]) for _, b in it.epoch()] == [2, 3]
    with pytest.warns(UserWarning, match="ran out of data"):
        assert [int(b.xs[0][0, 0]) for _, b in it.epoch()] == [4]
    assert it.exhausted and not it.has_more()


def test_reiterable_iterable_gets_fresh_passes():
    batches = [(np.zeros((2, 3)), np.zeros(2)), (np.ones((3, 3)), np.zeros(3))]
    ad = data.make_adapter(batches_iterable := _Reiterable(batches), spec=spec())
    assert ad.reiterable and ad.num_batches == 2
    it = data.EpochIterator(ad)
    assert [b.size for _, b in it.epoch()] == [2, 3]
    assert [b.size for _, b in it.epoch()] == [2, 3]
    assert batches_iterable.iters == 3         # one probe (is it re-iterable?) + 2 passes


class _Reiterable:
    def __init__(self, items):
        self.items = items
        self.iters = 0

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        self.iters += 1
        return iter(self.items)


class Seq:
    def __init__(self, n, bs, with_y=True):
        self.n, self.bs, self.with_y = n, bs, with_y
        self.ends = 0

    def __len__(self):
        return -(-self.n // self.bs)

    def __getitem__(self, i):
        if i >= len(self):
            raise IndexError(i)
        k = min(self.bs, self.n - i * self.bs)
        x = np.full((k, 3), i, np.float64)
        return (x, np.zeros(k)) if self.with_y else x

    def on_epoch_end(self):
        self.ends += 1


def test_sequence_adapter_shuffles_batch_order_and_calls_on_epoch_end():
    seq = Seq(50, 8)
    set_random_seed(0)
    ad = data.make_adapter(seq, spec=spec(), shuffle=True)
    order = [int(b.xs[0][0, 0]) for b in ad.iterate()]
    assert sorted(order) == list(range(7)) and order != list(range(7))
    assert seq.ends == 1
    assert ad.iterate().__next__().xs[0].dtype == np.float32


def test_sequence_batch_structure_errors():
    s = spec()
    ad = data.make_adapter(Seq(4, 2, with_y=False), spec=s)
    with pytest.raises(DataError, match="yielded only x in batch 0 of Seq"):
        next(ad.iterate())
    ad = data.make_adapter(Seq(4, 2, with_y=False), spec=s, mode="predict")
    assert next(ad.iterate()).ys == []

    def bad():
        yield np.zeros((2, 5)), np.zeros(2)

    ad = data.make_adapter(bad(), spec=s)
    with pytest.raises(ShapeError, match=r"\(None, 3\).*batch 0 of generator"):
        next(ad.iterate())

    def mismatched():
        yield np.zeros((2, 3)), np.zeros(3)

    with pytest.raises(DataError, match="x has 2 samples but y has 3 in batch 0"):
        next(data.make_adapter(mismatched(), spec=s).iterate())


def test_generator_and_batch_size_warns():
    with pytest.warns(UserWarning, match="batch_size=16 is ignored"):
        data.make_adapter(Seq(4, 2), spec=spec(), batch_size=16)


def test_model_without_loss_trains_on_x_alone():
    m = Model()
    m.loss = None                        # add_loss-only model (a VAE)
    ad = data.make_adapter(np.zeros((4, 3)), spec=data.ModelSpec.from_model(m))
    assert ad.ys == [] and ad.sws == []


class Deferred:
    """Like a Sequential without input shape: no inputs until it sees data."""

    def __init__(self):
        self.loss = "mse"
        self._built = None

    @property
    def inputs(self):
        if self._built is None:
            raise AttributeError("not built")
        return [Sym("x", self._built, "float32")]

    @property
    def outputs(self):
        if self._built is None:
            raise AttributeError("not built")
        return [Sym("y", (None, 1))]

    @property
    def output_names(self):
        return [t.name for t in self.outputs]

    def _check_input_arrays(self, arrays):
        self._built = (None,) + arrays[0].shape[1:]


def test_deferred_model_spec_is_refreshed_after_build():
    m = Deferred()
    s = data.ModelSpec.from_model(m)
    assert s.input_names is None
    ad = data.make_adapter(np.zeros((4, 3), np.float64), np.zeros(4), spec=s)
    assert s.input_names == ["x"] and s.output_names == ["y"]
    assert ad.xs[0].dtype == np.float32 and ad.ys[0].shape == (4, 1)


def test_unpack():
    assert data.unpack_x_y_sample_weight(1) == (1, None, None)
    assert data.unpack_x_y_sample_weight((1,)) == (1, None, None)
    assert data.unpack_x_y_sample_weight([1, 2]) == (1, 2, None)
    assert data.unpack_x_y_sample_weight((1, 2, 3)) == (1, 2, 3)
    with pytest.raises(DataError):
        data.unpack_x_y_sample_weight((1, 2, 3, 4))


def test_no_spurious_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(arr_adapter(shuffle=True).iterate())
