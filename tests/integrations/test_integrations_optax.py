"""adaptlr schedules in optax (the real package, on JAX's CPU backend): jit-safe, equal at every step."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the integrations extra (jax[cpu], optax) is not installed")
optax = pytest.importorskip("optax", reason="the integrations extra (optax) is not installed")
jnp = jax.numpy

from adaptlr import schedules as S  # noqa: E402
from adaptlr.integrations.optax import as_optax  # noqa: E402

STEPS = 60
SCHEDULES = [
    S.warmup(S.cosine(1e-2, steps=50), steps=10),
    S.join([S.linear(0.0, 1e-2, 10), S.constant(1e-2), S.cosine(1e-2, 30)], [10, 30]),
    S.one_cycle(0.1, STEPS),
    S.cyclic(1e-3, 1e-2, 7, mode="exp_range", gamma=0.99),
    S.wsd(3e-3, STEPS, warmup=0.1, decay=0.3, cooldown="1-sqrt"),
    S.multistep(0.1, [15, 40], gamma=0.3),
    S.exponential(0.1, 0.9, steps=3, staircase=True),
    S.cosine_restarts(0.1, 10, mult=2),
    S.inverse_sqrt(0.1, 10),
]


def test_a_raw_schedule_fails_inside_jit_the_adapter_does_not():
    s = SCHEDULES[0]
    with pytest.raises(jax.errors.ConcretizationTypeError):
        jax.jit(s)(jnp.asarray(3))
    assert float(jax.jit(as_optax(s, STEPS))(jnp.asarray(3))) == np.float32(s(3))


@pytest.mark.parametrize("s", SCHEDULES, ids=lambda s: s.name)
def test_values_equal_the_schedule_at_every_step_under_jit_and_vmap(s):
    sched = jax.jit(jax.vmap(as_optax(s, STEPS)))
    counts = jnp.arange(STEPS + 1, dtype=jnp.int32)
    got = np.asarray(sched(counts))
    want = np.array([s(t) for t in range(STEPS + 1)], dtype=np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    # past the end of the table the last value holds; before 0 (never produced by optax) the first
    assert float(jax.jit(as_optax(s, STEPS))(jnp.asarray(STEPS + 25))) == want[-1]
    assert float(as_optax(s, STEPS)(-3)) == want[0]


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="steps"):
        as_optax(S.constant(0.1), 0)
    with pytest.raises(ValueError, match="schedule"):
        as_optax(0.1, 10)
    with pytest.raises(ValueError, match="finite"):
        as_optax(lambda t: float("nan") if t == 4 else 0.1, 10)


def _loss(params):
    # the gradient of sum(w) is 1 everywhere, so an sgd update is exactly -lr (in float32)
    return jnp.sum(params["w"])


def _trainer(schedule):
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=as_optax(schedule, STEPS))

    @jax.jit
    def step(params, state):
        grads = jax.grad(_loss)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, updates

    return tx, step


def _run(step, params, state, n):
    applied, logged = [], []
    for _ in range(n):
        params, state, updates = step(params, state)
        applied.append(-float(updates["w"][0]))
        logged.append(float(state.hyperparams["learning_rate"]))
    return params, state, applied, logged


def test_a_jitted_training_run_applies_and_logs_the_schedule_and_resumes_bit_identically():
    s = SCHEDULES[0]
    tx, step = _trainer(s)
    params = {"w": jnp.ones(3)}
    full_params, full_state, applied, logged = _run(step, params, tx.init(params), STEPS)
    want = [float(np.float32(s(t))) for t in range(STEPS)]
    assert applied == want  # (1) the lr applied at step t is s(t), t = completed steps, as optax counts
    assert logged == want  # (2) inject_hyperparams logs the lr of the update just made

    # (3) save after 25 steps (the state as plain NumPy leaves, pickled), resume in a fresh trainer
    half_params, half_state, _, _ = _run(step, params, tx.init(params), 25)
    blob = pickle.dumps(jax.device_get((half_params, half_state)))
    tx2, step2 = _trainer(s)
    saved_params, saved_state = pickle.loads(blob)
    treedef = jax.tree_util.tree_structure(tx2.init(params))
    saved_state = jax.tree_util.tree_unflatten(treedef, jax.tree_util.tree_leaves(saved_state))
    resumed_params, resumed_state, applied2, _ = _run(step2, saved_params, saved_state, STEPS - 25)
    assert applied2 == want[25:]
    np.testing.assert_array_equal(np.asarray(resumed_params["w"]), np.asarray(full_params["w"]))
    assert int(resumed_state.count) == int(full_state.count) == STEPS
