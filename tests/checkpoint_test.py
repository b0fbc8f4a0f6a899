"""save and load: round trips, resuming, atomic writes, and clear errors for bad files."""

import json
import os
import zipfile
from typing import NamedTuple

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
    with pytest.raises(ValueError, match="is not a bpjax checkpoint .not an .npz archive"):
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


# --- a file that save writes loads: everything is checked before writing ---------------------------

UNSAVEABLE = [
    ({"m": jnp.zeros(3), "note": "abc"}, TypeError, r"opt_state\['note'\] \(leaf 1\) is a str"),
    (("abc",), TypeError, r"opt_state\[0\] \(leaf 0\) is a str"),
    ({"m": [jnp.zeros(2), ("x", jnp.ones(1))]}, TypeError, r"opt_state\['m'\]\[1\]\[0\] .* is a str"),
    ((None, jnp.zeros(2)), TypeError, r"opt_state\[0\] \(leaf 0\) is None"),
    ({"m": None}, TypeError, r"opt_state\['m'\] \(leaf 0\) is None"),
    ({"m": np.array([object()], dtype=object)}, TypeError, r"opt_state\['m'\] .* has dtype object"),
    ({"m": np.array(["a", "b"])}, TypeError, r"opt_state\['m'\] .* has dtype <U1"),
    ({"m": b"bytes"}, TypeError, r"opt_state\['m'\] .* is a bytes"),
    ({"m": object()}, TypeError, r"opt_state\['m'\] .* is a object, not an array"),
    ({"m": np.zeros(2, dtype=[("a", "f4")])}, TypeError, r"opt_state\['m'\] .* has dtype"),
    ({"m": np.datetime64("2024-01-01")}, TypeError, r"opt_state\['m'\] .* has dtype datetime64"),
    ({(1, 2): jnp.zeros(2)}, TypeError, r"opt_state has the key \(1, 2\) \(tuple\)"),
    ({"a": {1.5: jnp.zeros(2)}}, TypeError, r"opt_state\['a'\] has the key 1.5 \(float\)"),
    ({"a": {True: jnp.zeros(2)}}, TypeError, r"opt_state\['a'\] has the key True \(bool\)"),
    ({1: jnp.zeros(2), "a": jnp.zeros(2)}, TypeError, r"opt_state is not a pytree that jax.tree"),
]


@pytest.mark.parametrize("state, error, message", UNSAVEABLE)
def test_saving_an_unsaveable_state_over_a_good_checkpoint_leaves_it_intact(tmp_path, state,
                                                                            error, message):
    path = tmp_path / "m.npz"
    bp.save(path, NET, PARAMS, epoch=3)
    before = path.read_bytes()
    with pytest.raises(error, match=message):
        bp.save(path, NET, PARAMS, opt_state=state)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]
    assert bp.load(path).epoch == 3


@pytest.mark.parametrize("bad, error, message", [
    (dict(metadata={1: "a"}), TypeError, r"metadata has the key 1 \(int\): JSON keys are str"),
    (dict(metadata={"a": [{"b": {(1,): 2}}]}), TypeError, r"metadata\['a'\]\[0\]\['b'\] has the key"),
    (dict(metadata={"a": np.zeros(2)}), TypeError, r"metadata must be JSON-serialisable"),
    (dict(epoch=2.0), ValueError, r"epoch must be an int >= 0, got 2.0"),
    (dict(epoch=True), ValueError, r"epoch must be an int >= 0, got True"),
    (dict(epoch=jnp.array(1.5)), ValueError, r"epoch must be an int >= 0"),
    (dict(params=tuple(w.astype(jnp.complex128) for w in PARAMS)), TypeError,
     r"params\[0\] \(layer 1\) must be floating, got dtype complex128"),
    (dict(params=(PARAMS[0], None)), TypeError, r"params\[1\] \(layer 2\) must be an array"),
])
def test_bad_arguments_leave_the_file_intact(tmp_path, bad, error, message):
    path = tmp_path / "m.npz"
    bp.save(path, NET, PARAMS)
    before = path.read_bytes()
    args = dict(params=PARAMS) | bad
    with pytest.raises(error, match=message):
        bp.save(path, NET, args.pop("params"), **args)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


SAVEABLE = {
    "dict": {"m": jnp.zeros(3), "count": jnp.array(2, jnp.int32)},
    "nested": {"a": [jnp.ones(2), (jnp.zeros(()), {"b": jnp.arange(3)})], "c": ()},
    "int keys": {1: jnp.zeros(2), 2: jnp.ones(2)},
    "typed PRNG keys": {"key": jax.random.key(1), "keys": jax.random.split(jax.random.key(2), 3)},
    "old-style PRNG key": (jax.random.PRNGKey(3),),
    "python scalars": {"n": 3, "x": 0.5, "flag": True},
    "bfloat16, bool, complex": (jnp.ones(2, jnp.bfloat16), np.array([True, False]),
                                np.array([1 + 2j])),
    "empty": (),
}


@pytest.mark.parametrize("name", SAVEABLE)
def test_states_of_plain_containers_load_back_without_an_optimizer(tmp_path, name):
    state = SAVEABLE[name]
    bp.save(tmp_path / "m.npz", NET, PARAMS, opt_state=state)
    back = bp.load(tmp_path / "m.npz").opt_state
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        if jnp.issubdtype(getattr(b, "dtype", np.float64), jax.dtypes.prng_key):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))
        else:
            assert np.asarray(a).dtype == np.asarray(b).dtype
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_levenberg_marquardt_result_saves_loads_and_resumes(tmp_path):
    """Its state is bpjax's own NamedTuple (LMState): written by name, rebuilt by load without
    an optimizer (before, save wrote a file that load refused)."""
    r = bp.levenberg_marquardt(NET, PARAMS, X, Y, iterations=2)
    bp.save(tmp_path / "lm.npz", NET, r)
    ckpt = bp.load(tmp_path / "lm.npz")
    assert type(ckpt.opt_state) is bp.LMState and ckpt.epoch == 2
    chex.assert_trees_all_equal(ckpt.opt_state, r.opt_state)
    chex.assert_trees_all_equal(ckpt.params, r.params)
    more = bp.levenberg_marquardt(NET, ckpt, X, Y, iterations=1)
    assert more.epoch == 3


class _NoisyState(NamedTuple):
    key: jax.Array
    count: jax.Array


def _noisy_sgd(count_becomes_int32=False):
    """SGD plus Gaussian noise, its state a typed PRNG key (as ``optax.noisy_sgd(key=...)``'s in
    recent optax; optax 0.2.4 has no ``key=``) and a count, a weakly typed int64 from ``init``
    under x64. ``count_becomes_int32``: the update returns it as int32, as optax 0.2.4's lbfgs
    does with a count of its line search (``jax.lax.scan`` lets a weak type change so)."""
    def init(params):
        return _NoisyState(jax.random.key(0), jnp.asarray(0))

    def update(g, state, params=None):
        key, sub = jax.random.split(state.key)
        leaves, treedef = jax.tree.flatten(g)
        u = [-x + 0.01 * jax.random.normal(jax.random.fold_in(sub, i), x.shape, x.dtype)
             for i, x in enumerate(leaves)]
        count = state.count + 1
        count = count.astype(jnp.int32) if count_becomes_int32 else count
        return jax.tree.unflatten(treedef, u), _NoisyState(key, count)

    return optax.GradientTransformation(init, update)


@pytest.mark.parametrize("count_becomes_int32", [False, True])
def test_an_optimizer_state_with_a_prng_key_resumes(tmp_path, count_becomes_int32):
    noisy = _noisy_sgd(count_becomes_int32)
    kw = dict(learning_rate=0.01, optimizer=noisy, batch_size=None)
    first = bp.fit(NET, PARAMS, X, Y, epochs=2, **kw)
    bp.save(tmp_path / "m.npz", NET, first)
    resumed = bp.fit(NET, bp.load(tmp_path / "m.npz", optimizer=noisy), X, Y, epochs=2, **kw)
    whole = bp.fit(NET, PARAMS, X, Y, epochs=4, **kw)
    chex.assert_trees_all_close(resumed.params, whole.params, rtol=1e-12, atol=1e-14)


def test_replacing_keeps_the_permission_bits_and_a_new_file_follows_the_umask(tmp_path):
    path = tmp_path / "m.npz"
    bp.save(path, NET, PARAMS)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    for mode in (0o644, 0o640, 0o604):
        os.chmod(path, mode)
        bp.save(path, NET, PARAMS, epoch=1)
        assert path.stat().st_mode & 0o777 == mode and bp.load(path).epoch == 1


def test_a_symlink_is_written_through_to_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "m.npz"
    bp.save(target, NET, PARAMS)
    os.chmod(target, 0o640)
    link = tmp_path / "latest.npz"
    link.symlink_to(os.path.relpath(target, tmp_path))
    bp.save(link, NET, PARAMS, epoch=7)
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(target, tmp_path)
    assert bp.load(target).epoch == 7 and bp.load(link).epoch == 7
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path / "real")) == ["m.npz"]
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "real" / "new.npz")
    bp.save(dangling, NET, PARAMS, epoch=2)
    assert dangling.is_symlink() and bp.load(tmp_path / "real" / "new.npz").epoch == 2


def test_write_errors_name_the_users_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot write .*no/such/m.npz: the directory "
                                                r".*no/such does not exist") as info:
        bp.save(tmp_path / "no" / "such" / "m.npz", NET, PARAMS)
    assert ".tmp" not in str(info.value)
    with pytest.raises(IsADirectoryError, match=r"cannot write .*: it is a directory"):
        bp.save(tmp_path, NET, PARAMS)
    for path in (None, b"m.npz", 3):
        with pytest.raises(TypeError, match=r"path must be a str or a path, got"):
            bp.save(path, NET, PARAMS)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("corrupt", ["a weight", "the metadata", "an entry dropped"])
def test_a_file_that_does_not_read_back_as_written_never_replaces_the_old_one(
        tmp_path, monkeypatch, corrupt):
    """save reads the new file back before it takes the name: a write that went wrong (here
    np.savez made to write something else) leaves the old checkpoint as it was."""
    path = tmp_path / "m.npz"
    bp.save(path, NET, PARAMS, epoch=3)
    before = path.read_bytes()
    savez = np.savez

    def wrong_savez(f, **arrays):
        if corrupt == "a weight":
            arrays["params/0"] = arrays["params/0"] + 1
        elif corrupt == "the metadata":
            meta = json.loads(arrays["bpjax.json"].tobytes())
            meta["epoch"] = 4
            arrays["bpjax.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        else:
            del arrays["params/1"]
        savez(f, **arrays)

    monkeypatch.setattr(np, "savez", wrong_savez)
    with pytest.raises(OSError, match=r"does not read back as written; .*m.npz is left as it "
                                      r"was"):
        bp.save(path, NET, PARAMS, epoch=5)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]
    assert bp.load(path).epoch == 3


def test_results_of_fit_under_jit_save_and_load(tmp_path):
    jitted = jax.jit(lambda p: bp.fit(NET, p, X, Y, learning_rate=0.05, epochs=2,
                                      optimizer=ADAM))(PARAMS)
    assert isinstance(jitted.epoch, jax.Array)
    bp.save(tmp_path / "m.npz", NET, jitted)
    ckpt = bp.load(tmp_path / "m.npz", optimizer=ADAM)
    assert ckpt.epoch == 2 and type(ckpt.epoch) is int and ckpt.models is None
    chex.assert_trees_all_equal(ckpt.params, jitted.params)
    chex.assert_trees_all_equal(ckpt.opt_state, jitted.opt_state)


@pytest.mark.parametrize("optimizer", [None, ADAM])
def test_a_sweep_saves_loads_and_resumes(tmp_path, optimizer):
    M = 3
    stacked = jax.vmap(lambda k: bp.init(NET, k))(
        jax.random.split(jax.random.key(0), M))
    kw = dict(learning_rate=jnp.array([0.01, 0.02, 0.03]), optimizer=optimizer)
    half = bp.sweep(NET, stacked, X, Y, epochs=2, **kw)
    bp.save(tmp_path / "sweep.npz", NET, half, metadata={"what": "sweep"})
    ckpt = bp.load(tmp_path / "sweep.npz", optimizer=optimizer)
    assert ckpt.models == M and ckpt.params[0].shape == (M, *NET.shapes[0])
    np.testing.assert_array_equal(ckpt.epoch, [2, 2, 2])
    chex.assert_trees_all_equal(ckpt.params, half.params)
    chex.assert_trees_all_equal(ckpt.opt_state, half.opt_state)
    rest = bp.sweep(NET, ckpt, X, Y, epochs=2, **kw)
    whole = bp.sweep(NET, stacked, X, Y, epochs=4, **kw)
    chex.assert_trees_all_close(rest.params, whole.params, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(rest.epoch, [4, 4, 4])


# --- load: errors that name the file and the problem ----------------------------------------------

def test_load_of_foreign_files_names_the_file_and_what_it_is(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"a.npy is not a bpjax checkpoint: it is a single .npy "
                                         r"array"):
        bp.load(tmp_path / "a.npy")
    rng = np.random.default_rng(0)
    for name, data in (("random.npz", rng.bytes(1000)), ("empty.npz", b""),
                       ("pickle.npz", b"\x80\x04\x95" + rng.bytes(50))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"{name} is not a bpjax checkpoint \(not an .npz "
                                             rf"archive") as info:
            bp.load(tmp_path / name)
        assert "allow_pickle" not in str(info.value) and "pickle.load" not in str(info.value)
    np.savez(tmp_path / "objects.npz", **{"bpjax.json": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match=r"objects.npz: the entry 'bpjax.json' holds pickled "
                                         r"Python objects") as info:
        bp.load(tmp_path / "objects.npz")
    assert "allow_pickle" not in str(info.value)
    with zipfile.ZipFile(tmp_path / "zip.npz", "w") as z:
        z.writestr("readme.txt", "not an array")
    with pytest.raises(ValueError, match=r"zip.npz is not a (readable )?bpjax checkpoint"):
        bp.load(tmp_path / "zip.npz")


def _edit_net(meta, arrays, **layer0):
    meta["network"]["layers"][0].update(layer0)


HAND_EDITS = {
    "dtype float99": (lambda m, a: m["arrays"]["params"][0].update(dtype="float99"),
                      r"params\[0\] \(layer 1\) has dtype 'float99', which is not a dtype"),
    "dtype of another size": (lambda m, a: m["arrays"]["params"][0].update(dtype="float32"),
                              r"params\[0\] \(layer 1\) holds float64 data, which cannot be read "
                              r"as the float32"),
    "shape": (lambda m, a: m["arrays"]["params"][1].update(shape="x"),
              r"params\[1\] \(layer 2\) must be described by"),
    "shape of the wrong size": (lambda m, a: m["arrays"]["params"][1].update(shape=[5, 3]),
                                r"params\[1\] \(layer 2\) has shape \(5, 2\) but the metadata "
                                r"says \[5, 3\]"),
    "epoch abc": (lambda m, a: m.update(epoch="abc"), r"'epoch' must be an int >= 0, got 'abc'"),
    "epoch -1": (lambda m, a: m.update(epoch=-1), r"'epoch' must be an int >= 0, got -1"),
    "epoch true": (lambda m, a: m.update(epoch=True), r"'epoch' must be an int >= 0, got True"),
    "models": (lambda m, a: m.update(models="3"), r"'models' must be null or an int >= 1"),
    "no epoch": (lambda m, a: m.pop("epoch"), r"it has no epoch"),
    "network inputs": (lambda m, a: m["network"].update(inputs="3"),
                       r"the network cannot be built: Network inputs \(D\) must be an int"),
    "layer size": (lambda m, a: _edit_net(m, a, size=-1), r"layer 1 cannot be built: Layer size"),
    "activation": (lambda m, a: _edit_net(m, a, activation="swish"),
                   r"layer 1 cannot be built: unknown activation 'swish'"),
    "activation type": (lambda m, a: _edit_net(m, a, activation=3),
                        r"layer 1's activation must be a name or a list of names, got 3"),
    "adjacency": (lambda m, a: _edit_net(m, a, adjacency=[[1, 2]]),
                  r"layer 1 cannot be built: Layer adjacency"),
    "layer keys": (lambda m, a: m["network"]["layers"][0].pop("bias"),
                   r"layer 1 of 'network' must be an object with keys"),
    "layers": (lambda m, a: m["network"].update(layers={}), r"'network' must be an object"),
    "params list": (lambda m, a: m["arrays"]["params"].pop(),
                    r"'arrays' describes 1 weight matrices for a network of L = 2 layers"),
    "opt_state info": (lambda m, a: m["arrays"].update(opt_state=[1]),
                       r"the optimizer state must be null or an object"),
    "metadata": (lambda m, a: m.update(metadata=[1]), r"'metadata' must be an object"),
    "tree": (lambda m, a: m["arrays"]["opt_state"].update(tree={"set": []}),
             r"the optimizer state's 'tree' is not a tree description"),
    "tree leaves": (lambda m, a: m["arrays"]["opt_state"].update(tree={"tuple": ["*"] * 5}),
                    r"the optimizer state's tree has 5 leaves, the file 1"),
    "tree class": (lambda m, a: m["arrays"]["opt_state"].update(tree={"bpjax": ["save", ["*"]]}),
                   r"the optimizer state's 'tree' is not a tree description"),
    "tree fields": (lambda m, a: m["arrays"]["opt_state"].update(
        tree={"bpjax": ["LMState", ["*"]]}), r"the optimizer state's 'tree' is not a tree"),
    "key impl": (lambda m, a: m["arrays"]["opt_state"]["leaves"][0].update(impl="nope",
                                                                            dtype="key<x>"),
                 r"opt_state leaf 0 holds float64\[3\], not the key data"),
    "format": (lambda m, a: m.update(format=None), r"is not a bpjax checkpoint \(format None\)"),
}


@pytest.mark.parametrize("name", HAND_EDITS)
def test_hand_edited_metadata_is_an_error_naming_the_file(tmp_path, name):
    path = tmp_path / "m.npz"
    bp.save(path, NET, PARAMS, opt_state={"m": np.zeros(3)})
    change, message = HAND_EDITS[name]
    _rewrite(path, change)
    with pytest.raises(ValueError, match=message) as info:
        bp.load(path)
    assert str(path) in str(info.value)


def test_load_argument_types():
    with pytest.raises(TypeError, match=r"optimizer must be an optax.GradientTransformation "
                                        r"\(e.g. optax.adam\(1.0\).*got str: 'adam'"):
        bp.load("m.npz", optimizer="adam")
    with pytest.raises(TypeError, match=r"net must be a bpjax.Network or None, got str: 'x'"):
        bp.load("m.npz", net="x")
    with pytest.raises(TypeError, match=r"path must be a str or a path, got NoneType"):
        bp.load(None)


def test_files_of_the_earlier_format_still_load(tmp_path, trained):
    path = tmp_path / "m.npz"
    bp.save(path, NET, trained)

    def earlier(meta, arrays):  # version 1 as first written: no 'models', no 'tree'
        del meta["models"], meta["arrays"]["opt_state"]["tree"]
    _rewrite(path, earlier)
    ckpt = bp.load(path, optimizer=ADAM)
    assert ckpt.models is None and ckpt.epoch == 2
    chex.assert_trees_all_equal(ckpt.opt_state, trained.opt_state)
