"""``make wheel-check``: the installed wheel imports and works (run by the wheel's venv).

Not collected by pytest: it needs a fresh virtual environment with the wheel installed
(and its dependencies downloaded), which the make target builds.
"""

import importlib.metadata
import sys
import sysconfig
from pathlib import Path

import jax
import numpy as np

import bpjax as bp

here = Path(bp.__file__).resolve().parent
site = Path(sysconfig.get_paths()["purelib"]).resolve()
assert here.parent == site, f"bpjax imported from {here}, not from the wheel in {site}"
assert bp.__version__ == importlib.metadata.version("bpjax"), (
    bp.__version__, importlib.metadata.version("bpjax"))
assert (here / "py.typed").is_file(), "py.typed is missing from the wheel"
files = {str(f) for f in importlib.metadata.files("bpjax")}
assert "bpjax/py.typed" in files, sorted(files)
assert not any(f.split("/")[0] in {"tests", "benchmarks", "experiments"} for f in files), files
missing = [n for n in bp.__all__ if not hasattr(bp, n)]
assert not missing, missing

net = bp.Network(2, [bp.Layer(2, ("identity", "square")), bp.Layer(1, "identity", bias=False)])
params = bp.init(net, jax.random.key(0))
X = np.random.default_rng(0).uniform(-1, 1, (32, 2)).astype(np.float32)
Y = (X ** 2).sum(1, keepdims=True)
result = bp.fit(net, params, X, Y, learning_rate=0.5, epochs=5)
assert result.losses.shape == (5,) and bool(np.isfinite(result.losses).all())

print(f"bpjax {bp.__version__} from the wheel, in {here}: imports and trains "
      f"(jax {jax.__version__}, Python {sys.version.split()[0]})")
