"""Models that are only traced, counted or serialised hold no weight memory (`patching.unallocated_weights`).

The grader rebuilds a student's architecture, builds the references and, in the sandbox,
runs a builder whose model leaves as its architecture, all without allocating weights
(AlexNet: 61M). Such models must still trace, count and read exactly like zero-weight
models, must not be allocated behind the grader's back by Keras, and code that Keras
refuses to run that way must still be graded.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import failed

from grader.grading import grade_folder
from grader.patching import STATELESS_REFUSAL, UNALLOCATED_MIN_SIZE, unallocated_weights
from grader.paths import solutions_dir
from grader.questions import get_question
from grader.sandbox import Codec
from grader.tracing import trace

WIDE = 256  # a 256x512 kernel is over `UNALLOCATED_MIN_SIZE`; the other weights are under it


def _model(name: str) -> keras.Model:
    return keras.Sequential(
        [keras.Input((WIDE,)), keras.layers.Dense(512, activation="relu"), keras.layers.Dense(2)], name=name
    )


def _unallocated(model: keras.Model) -> list[bool]:
    """Per weight, whether it holds no memory."""
    return [variable._value is None for variable in model.weights]


BIG_ONLY = [True, False, False, False]  # only the first kernel is big enough to be left unallocated


def _listed_for_initialisation() -> list:
    from keras.src.backend.common import global_state

    return list(global_state.get_global_attribute("uninitialized_variables") or [])


def test_a_model_built_unallocated_traces_counts_and_reads_as_zeros():
    assert WIDE * 512 >= UNALLOCATED_MIN_SIZE > 512 * 2
    with unallocated_weights():
        model = _model("unallocated")  # glorot_uniform kernels: reads must not draw random numbers
    assert _unallocated(model) == BIG_ONLY
    layers = trace(model, (WIDE,))  # a symbolic call: on its way out Keras initialises every listed variable
    assert [layer.params for layer in layers] == [WIDE * 512 + 512, 512 * 2 + 2]
    assert _unallocated(model) == BIG_ONLY, "the trace allocated the weights"
    assert not {id(v) for v in _listed_for_initialisation()} & {id(v) for v in model.weights}
    first, second = model.get_weights(), model.get_weights()
    assert [w.shape for w in first] == [(WIDE, 512), (512,), (512, 2), (2,)]
    assert not np.any(first[0]) and not np.any(second[0])  # the big kernel reads as zeros, every time
    assert np.any(first[2]) and np.array_equal(first[2], second[2])  # a small one has its own (random) values
    out = model(np.ones((2, WIDE), dtype="float32"), training=False)
    assert np.allclose(out, np.broadcast_to(first[3], (2, 2)))
    assert _unallocated(model) == BIG_ONLY


def test_models_built_outside_the_block_are_untouched():
    before = _model("allocated")
    with unallocated_weights():
        _model("inside")
    after = _model("allocated_after")
    assert not any(_unallocated(before) + _unallocated(after))
    assert np.any(after.get_weights()[0])  # random initialisers as usual


def test_small_state_stays_writable_so_random_layers_run():
    """A random layer's seed state is written on every call (q3 runs a student's rebuilt augmentation)."""
    with unallocated_weights():
        flip = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.RandomFlip("horizontal")])
    images = np.arange(2 * 8 * 8, dtype="float32").reshape(2, 8, 8, 1)
    outputs = [np.asarray(flip(images, training=True)) for _ in range(8)]
    assert any(not np.array_equal(out, images) for out in outputs)


def test_keras_refusal_names_the_stateless_scope():
    """The child's fallback recognises Keras's refusal by this text: a Keras upgrade that changes it fails here."""
    with pytest.raises(ValueError, match=STATELESS_REFUSAL), unallocated_weights():
        keras.Variable(np.zeros(3, dtype="float32"))


def test_the_grader_rebuilds_architectures_unallocated(tmp_path: Path):
    model = _model("sent")
    codec = Codec(tmp_path, unallocated=True)
    back = codec.decode(json.loads(json.dumps(Codec(tmp_path).encode(model))))
    assert _unallocated(back) == BIG_ONLY and back.count_params() == model.count_params()
    assert [layer.output_shape for layer in trace(back, (WIDE,))] == [(512,), (2,)]
    assert _unallocated(back) == BIG_ONLY
    assert not any(np.any(w) for w in back.get_weights())  # an architecture comes back with zero weights


def test_a_builder_that_needs_allocated_weights_is_still_graded(tmp_path: Path):
    """Keras refuses a variable made from a value without memory: the sandbox runs the builder again, allocated."""
    source = (solutions_dir() / get_question("q1").filename).read_text()
    source = source.replace("def build_lenet5(", "def _reference_lenet5(", 1) + (
        "\n\ndef build_lenet5(*args, **kwargs):\n"
        "    print('scale', keras.Variable(np.ones(3, dtype='float32')).numpy().sum())\n"
        "    return _reference_lenet5(*args, **kwargs)\n"
    )
    source = "import keras\nimport numpy as np\n" + source
    (tmp_path / get_question("q1").filename).write_text(source)
    result = grade_folder(get_question("q1"), tmp_path, isolated=True)
    assert failed(result) == {}
    assert result.score == result.max_score
