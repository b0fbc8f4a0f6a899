"""save and load: round trips, resuming, atomic writes, and clear errors for bad files."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bpjax as bp
from conftest import random_data, random_params

NET = bp.Network(3, [bp.Layer(4, ("tanh", "square", "logistic", "identity")),
                     bp.Layer(2, "identity")])
DAG = bp.Network(2, [
    bp.Layer(3, "tanh", adjacency=[[1, 0, 1], [1, 1, 0]]),
    bp.Layer(2, ("logistic", "identity"), inputs=(0, 1), bias=False),
    bp.Layer(1, "identity", inputs=(1, 2)),
])
PARAMS = random_params(NET, 0)
X, Y = random_data(NET, 6, 0)
ADAM = optax.adam(1.0)


@pytest.fixture(scope="module")
def trained():
    return bp.fit(NET, PARAMS, X, Y, learning_rate=0.05, epochs=2, optimizer=ADAM,
                  shuffle=jax.random.key(0))


def test_round_trip_with_optimizer_state(tmp_path, trained):
    path = bp.save(tmp_path / "model.npz", NET, trained, metadata={"note": "adam", "lr": 0.05})
    ckpt = bp.load(path, optimizer=ADAM)
    assert ckpt.net == NET and ckpt.epoch == 2
    assert ckpt.metadata == {"note": "adam", "lr": 0.05}
    chex.assert_trees_all_equal(ckpt.params, trained.params)
    chex.assert_trees_all_equal(ckpt.opt_state, trained.opt_state)
    assert jax.tree.structure(ckpt.opt_state) == jax.tree.structure(trained.opt_state)
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


def test_resuming_from_a_checkpoint_equals_training_on(tmp_path, trained):
    bp.save(tmp_path / "m.npz", NET, trained)
    ckpt = bp.load(tmp_path / "m.npz", net=NET, optimizer=ADAM)
    kw = dict(learning_rate=0.05, optimizer=ADAM, shuffle=jax.random.key(0))
    resumed = bp.fit(NET, ckpt, X, Y, epochs=2, **kw)
    whole = bp.fit(NET, PARAMS, X, Y, epochs=4, **kw)
    chex.assert_trees_all_close(resumed.params, whole.params, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
def test_round_trip_of_a_dag_without_optimizer_state(tmp_path, dtype):
    params = tuple(w.astype(dtype) for w in random_params(DAG, 1))
    bp.save(tmp_path / "dag.npz", DAG, params)
    ckpt = bp.load(tmp_path / "dag.npz")
    assert ckpt.net == DAG and ckpt.opt_state is None and ckpt.epoch == 0
    assert all(w.dtype == dtype for w in ckpt.params)
    chex.assert_trees_all_equal(ckpt.params, params)


def test_plain_sgd_state_round_trips_without_naming_an_optimizer(tmp_path):
    result = bp.fit(NET, PARAMS, X, Y, learning_rate=0.1, epochs=1)
    bp.save(tmp_path / "sgd.npz", NET, result)
    assert bp.load(tmp_path / "sgd.npz").opt_state == optax.EmptyState()


def test_save_replaces_a_file_atomically_and_keeps_it_on_failure(tmp_path):
    path = tmp_path / "m.npz"
    bp.save(path, NET, PARAMS, epoch=1)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        bp.save(path, NET, PARAMS, metadata={"bad": object()})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]
    bp.save(path, NET, PARAMS, epoch=5)
    assert bp.load(path).epoch == 5


def test_user_activations_are_saved_by_name(tmp_path):
    cube = bp.Activation("cube_for_checkpoint", lambda a: a**3, lambda a: 3 * a**2)
    net = bp.Network(1, [bp.Layer(1, cube)])
    params = random_params(net, 0)
    with pytest.raises(ValueError, match=r"layer 1 uses the activation 'cube_for_checkpoint', "
                                         r"which is not registered"):
        bp.save(tmp_path / "c.npz", net, params)
    registered = bp.register_activation("cube_for_checkpoint", cube.phi, cube.dphi)
    net = bp.Network(1, [bp.Layer(1, "cube_for_checkpoint")])
    bp.save(tmp_path / "c.npz", net, params)
    assert bp.load(tmp_path / "c.npz").net.layers[0].activations == (registered,)


# --- bad files ------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*nothing.npz"):
        bp.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.99])
def test_truncated_file(tmp_path, trained, keep):
    path = tmp_path / "m.npz"
    bp.save(path, NET, trained)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=r"is not a readable bpjax checkpoint \(truncated or "
                                         r"corrupt\?\)"):
        bp.load(path, optimizer=ADAM)


def test_files_that_are_not_checkpoints(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="is not a readable bpjax checkpoint"):
        bp.load(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"is not a bpjax checkpoint: it has no bpjax.json entry "
                                         r"\(entries: a\)"):
        bp.load(tmp_path / "other.npz")
    np.savez(tmp_path / "fmt.npz", **{"bpjax.json": np.frombuffer(b'{"format": "x"}', np.uint8)})
    with pytest.raises(ValueError, match=r"is not a bpjax checkpoint \(format 'x'\)"):
        bp.load(tmp_path / "fmt.npz")
    with pytest.raises(ValueError, match="is not a file"):
        bp.load(tmp_path)


def _rewrite(path, change):
    """Rewrites a checkpoint with ``change(meta, arrays)`` applied."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["bpjax.json"].tobytes())
    change(meta, arrays)
    arrays["bpjax.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


def test_mismatched_files(tmp_path, trained):
    path = tmp_path / "m.npz"
    bp.save(path, NET, trained)
    with pytest.raises(ValueError, match=r"holds another network"):
        bp.load(path, net=DAG)
    with pytest.raises(ValueError, match=r"holds an optimizer state of structure .*ScaleByAdam.* "
                                         r"pass the optimizer that made it"):
        bp.load(path)  # plain SGD expected
    with pytest.raises(ValueError, match=r"opt_state leaf 1 is float64\[4, 4\], but the optimizer "
                                         r"given makes float32\[4, 4\]"):
        bp.load(path, optimizer=optax.adam(1.0, mu_dtype=jnp.float32))

    def version(meta, arrays):
        meta["version"] = 99
    _rewrite(path, version)
    with pytest.raises(ValueError, match=r"checkpoint of version 99; this bpjax reads version 1"):
        bp.load(path)

    bp.save(path, NET, PARAMS)

    def wrong_shape(meta, arrays):
        arrays["params/1"] = arrays["params/1"][:, :1]
        meta["arrays"]["params"][1]["shape"] = [5, 1]
    _rewrite(path, wrong_shape)
    with pytest.raises(ValueError, match=r"the weights do not fit the saved network: params\[1\] "
                                         r"\(layer 2\) has shape \(5, 1\), expected"):
        bp.load(path)

    bp.save(path, NET, PARAMS)

    def missing(meta, arrays):
        del arrays["params/0"]
    _rewrite(path, missing)
    with pytest.raises(ValueError, match=r"the entry params/0 \(params\[0\] \(layer 1\)\) is "
                                         r"missing"):
        bp.load(path)


def test_bad_arguments_to_save(tmp_path, trained):
    with pytest.raises(TypeError, match="save expects a bpjax.Network, got str"):
        bp.save(tmp_path / "m.npz", "net", PARAMS)
    with pytest.raises(ValueError, match=r"params has 1 layers, expected L = 2"):
        bp.save(tmp_path / "m.npz", NET, PARAMS[:1])
    with pytest.raises(ValueError, match="pass either a result or opt_state, not both"):
        bp.save(tmp_path / "m.npz", NET, trained, trained.opt_state)
    with pytest.raises(ValueError, match=r"epoch must be an int >= 0, got -1"):
        bp.save(tmp_path / "m.npz", NET, PARAMS, epoch=-1)
    with pytest.raises(TypeError, match="metadata must be a dict, got list"):
        bp.save(tmp_path / "m.npz", NET, PARAMS, metadata=[1])
    assert not any(tmp_path.iterdir())
