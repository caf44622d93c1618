"""Which Keras backend trains (``KERAS_BACKEND=tensorflow|jax|torch``), checked before Keras loads.

Keras 3 reads ``KERAS_BACKEND`` once, when it is first imported; bcpareto's training code uses
only Keras and numpy (data.py's input pipeline included), so every backend trains the same
models from the same batches. TensorFlow is still what converts a model to TFLite: a search on
another backend saves its .keras files and ``bcpareto edge`` measures them later in a
TensorFlow process.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from .errors import BcParetoError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
INSTALL = {
    "tensorflow": "pip install tensorflow",
    "jax": "pip install 'bcpareto[jax]'   (or: pip install 'jax[cpu]')",
    "torch": "pip install 'bcpareto[torch]'   (or: pip install torch)",
}


class BackendError(BcParetoError):
    """KERAS_BACKEND names no backend, or one that is not installed (exit code 2)."""


def chosen_backend() -> str:
    """The backend Keras will load: ``KERAS_BACKEND`` (any case and spacing; blank is unset),
    else TensorFlow."""
    return (os.environ.get("KERAS_BACKEND") or "").strip().lower() or DEFAULT


def check_backend() -> str:
    """The chosen backend's name; BackendError if it is unknown or not installed. Imports nothing.

    Keras reads ``KERAS_BACKEND`` itself, as written, when it is first imported (and so do the
    worker processes, which inherit it), and takes ``" jax"`` or ``TensorFlow`` for no backend:
    the checked name is written back to the environment, so call this before Keras loads.
    """
    name = chosen_backend()
    if name not in BACKENDS:
        raise BackendError(f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r} is not a backend bcpareto "
                           f"trains on; expected one of {', '.join(BACKENDS)} (unset: {DEFAULT})")
    if "KERAS_BACKEND" in os.environ:
        os.environ["KERAS_BACKEND"] = name  # what Keras and the workers read
    if importlib.util.find_spec(name) is None:
        raise BackendError(f"KERAS_BACKEND={name}, but {name} is not installed in this Python "
                           f"({sys.executable}); install it with: {INSTALL[name]}")
    if name == "jax" and importlib.util.find_spec("jaxlib") is None:
        raise BackendError(f"KERAS_BACKEND=jax, but jaxlib is not installed; install it with: {INSTALL['jax']}")
    return name


def tensorflow_trains() -> bool:
    """Whether the training process runs TensorFlow (and so can convert to TFLite in process)."""
    return chosen_backend() == "tensorflow"


def describe_devices() -> str:
    """Start the chosen backend (quietly) and say what it will train on, in words."""
    name = check_backend()
    if name == "tensorflow":
        from .quiet import import_tensorflow

        return f"tensorflow, {import_tensorflow()}"
    if name == "jax":
        import jax

        devices = jax.devices()
        kinds = sorted({d.platform.upper() for d in devices})
        return f"jax {jax.__version__}, {len(devices)} device(s): {', '.join(kinds)}"
    import torch

    if torch.cuda.is_available():
        return f"torch {torch.__version__}, GPU: {torch.cuda.get_device_name(0)}"
    return f"torch {torch.__version__}, CPU ({torch.get_num_threads()} threads)"


def set_seed(seed: int) -> None:
    """keras.utils.set_random_seed without importing TensorFlow on another backend.

    Keras' own function also seeds TensorFlow whenever it is installed, which imports it (a
    second framework's start-up and memory) into a JAX or PyTorch process."""
    import random

    import keras
    import numpy as np

    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)
