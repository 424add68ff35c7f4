"""adaptlr schedules in Keras 3 (the real package; torch backend in this process, JAX's XLA for jit_compile)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

if "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras", reason="the integrations extra (keras) is not installed")
if keras.backend.backend() != "torch":
    pytest.skip(
        f"keras was imported with the {keras.backend.backend()} backend before this module", allow_module_level=True
    )

import torch  # noqa: E402
from keras import ops  # noqa: E402

from adaptlr import schedules as S  # noqa: E402
from adaptlr.integrations.keras import KerasSchedule, as_keras  # noqa: E402

# Keras 3.15 + NumPy 2 warn on every tensor conversion (keras' __array__ lacks `copy`); torch warns on jit.script
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]

STEPS = 40
SCHEDULE = S.warmup(S.cosine(1e-2, steps=30), steps=10)


def _want(s, n):
    return np.array([s(t) for t in range(n)], dtype=np.float32)


def test_values_equal_the_schedule_at_every_step_and_hold_after_the_end():
    lr = as_keras(SCHEDULE, STEPS)
    got = np.array([float(lr(torch.tensor(t))) for t in range(STEPS + 5)], dtype=np.float32)
    want = _want(SCHEDULE, STEPS + 1)
    np.testing.assert_array_equal(got[: STEPS + 1], want)
    np.testing.assert_array_equal(got[STEPS + 1 :], want[-1])


def test_a_schedule_passed_bare_fails_in_keras_the_adapter_does_not():
    opt = keras.optimizers.SGD(learning_rate=SCHEDULE)  # keras takes a callable for a zero-argument function
    with pytest.raises(TypeError, match="step"):
        _ = opt.learning_rate
    assert float(keras.optimizers.SGD(learning_rate=as_keras(SCHEDULE, STEPS)).learning_rate) == SCHEDULE(0)


def test_config_is_the_spec_and_round_trips_through_keras_serialization():
    lr = as_keras(SCHEDULE, STEPS, name="warmup_cosine")
    assert lr.get_config() == {"schedule": SCHEDULE.spec, "steps": STEPS, "name": "warmup_cosine"}
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(lr))
    assert isinstance(again, KerasSchedule) and again.schedule == SCHEDULE and again.steps == STEPS
    assert KerasSchedule.from_config(lr.get_config()).schedule == SCHEDULE
    assert as_keras(repr(SCHEDULE), STEPS).schedule == SCHEDULE  # a call-style spec string is read too
    with pytest.raises(ValueError, match="no spec"):
        as_keras(lambda t: 0.1, STEPS).get_config()
    with pytest.raises(ValueError, match="steps"):
        as_keras(SCHEDULE, 0)


class _Recorder(keras.callbacks.Callback):
    """The lr Keras reports before each batch, and the lr the batch applied (SGD on a loss of gradient 1)."""

    def __init__(self):
        super().__init__()
        self.logged, self.applied = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.logged.append(float(self.model.optimizer.learning_rate))
        self.before = self.model.layers[0].kernel.numpy().copy()

    def on_train_batch_end(self, batch, logs=None):
        self.applied.append(float((self.before - self.model.layers[0].kernel.numpy())[0, 0]))


def test_a_training_run_applies_and_reports_the_schedule_at_every_step():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", dtype="float64")]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=as_keras(SCHEDULE, STEPS)),
        loss=lambda y_true, y_pred: ops.mean(y_pred),
    )  # d loss / d kernel = mean(x) = 1
    rec = _Recorder()
    model.fit(
        np.ones((16, 4)), np.zeros((16, 1)), batch_size=8, epochs=STEPS // 2, shuffle=False, verbose=0, callbacks=[rec]
    )
    want = _want(SCHEDULE, STEPS).astype(np.float64)
    np.testing.assert_allclose(rec.applied, want, rtol=1e-12, atol=1e-15)  # float64 weights: exact to rounding
    np.testing.assert_array_equal(np.array(rec.logged, dtype=np.float32), want.astype(np.float32))


def _adam_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=as_keras(SCHEDULE, STEPS)), loss="mse")
    return model


def test_save_and_resume_from_a_keras_file_continue_bit_identically(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)), rng.normal(size=(32, 1))
    fit = {"batch_size": 8, "shuffle": False, "verbose": 0}
    full = _adam_model()
    full.fit(x, y, epochs=10, **fit)

    half = _adam_model()
    half.fit(x, y, epochs=4, **fit)
    half.save(tmp_path / "half.keras")
    resumed = keras.saving.load_model(tmp_path / "half.keras")
    lr = resumed.optimizer._learning_rate
    assert isinstance(lr, KerasSchedule) and lr.schedule == SCHEDULE
    assert int(resumed.optimizer.iterations) == 16
    resumed.fit(x, y, epochs=10, initial_epoch=4, **fit)
    assert int(resumed.optimizer.iterations) == int(full.optimizer.iterations) == 40
    for a, b in zip(full.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_schedule_compiles_whole_under_torch_compile():
    # jit_compile=True on Keras' torch backend is torch.compile of the train step (23 s for the smallest model
    # on 2 cores); the schedule part of it compiles as one graph, which is what that needs
    lr = as_keras(SCHEDULE, STEPS)
    compiled = torch.compile(lr.__call__, fullgraph=True, dynamic=True)
    got = np.array([float(compiled(torch.tensor(t))) for t in range(0, STEPS + 3, 7)], dtype=np.float32)
    want = np.array([SCHEDULE(min(t, STEPS)) for t in range(0, STEPS + 3, 7)], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


JAX_RUN = """
import os
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
from keras import ops
from adaptlr import schedules as S
from adaptlr.integrations.keras import as_keras
s = S.warmup(S.cosine(1e-2, steps=30), steps=10)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=as_keras(s, 40)),
              loss=lambda y_true, y_pred: ops.mean(y_pred), jit_compile=True)
kernels = []
cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: kernels.append(  # one batch an epoch
    float(model.layers[0].kernel.numpy()[0, 0])))
model.fit(np.ones((8, 4)), np.zeros((8, 1)), batch_size=8, epochs=40, shuffle=False, verbose=0, callbacks=[cb])
print(keras.backend.backend(), model.jit_compile, int(model.optimizer.iterations))
print(" ".join(repr(k) for k in kernels))
"""


@pytest.mark.slow
def test_jit_compile_true_on_the_jax_backend_applies_the_schedule():
    pytest.importorskip("jax", reason="the integrations extra (jax) is not installed")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(JAX_RUN)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    head, kernels = out.stdout.strip().splitlines()[-2:]
    assert head == "jax True 40"
    applied = -np.diff(np.array([0.0] + [float(k) for k in kernels.split()], dtype=np.float32))
    np.testing.assert_allclose(applied, _want(SCHEDULE, STEPS), rtol=2e-4, atol=2e-8)  # float32 weights
