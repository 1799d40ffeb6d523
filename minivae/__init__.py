"""minivae: a variational autoencoder written from scratch in NumPy.

Every forward and backward pass is derived by hand (``docs/derivations``)
and checked against central finite differences (:mod:`minivae.gradcheck`).

>>> from minivae import VAE, fit, digits
"""

from .backend import cuda_status, to_device, to_numpy
from .data import digits, load_mnist, one_hot, ring, train_val_test_split
from .model import CVAE, VAE, VAEConfig, build_model
from .ring_density import ring_log_density
from .schedules import Constant, Cosine, StepDecay, Warmup
from .serialize import load_model, load_trainer, save_model, save_trainer
from .train import History, NonFiniteError, Trainer, fit

__version__ = "0.1.0"

__all__ = ["VAE", "CVAE", "VAEConfig", "build_model", "Trainer", "fit", "History", "NonFiniteError",
           "Constant", "StepDecay", "Cosine", "Warmup",
           "save_model", "load_model", "save_trainer", "load_trainer",
           "digits", "ring", "ring_log_density", "load_mnist", "one_hot", "train_val_test_split", "to_numpy",
           "to_device", "cuda_status"]
