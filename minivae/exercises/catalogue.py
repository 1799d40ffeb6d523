"""Every exercise, in the order a learner meets them: the network's pieces (:mod:`.pieces`), the latent variable
and the likelihoods (:mod:`.densities`), the optimiser (:mod:`.optimiser`), the estimators (:mod:`.estimators`),
the whole model (:mod:`.capstone`) and the whole model trained on the importance-weighted bound (:mod:`.bound`)."""

from .bound import BOUND
from .capstone import ELBO, ELBO_GAUSSIAN, FORWARD
from .densities import BERNOULLI, GAUSSIAN, KL, REPARAM
from .estimators import IWAE, SCORE
from .optimiser import ADAM
from .pieces import ACTIVATION, AFFINE, MLP

EXERCISES = {ex.name: ex for ex in (AFFINE, ACTIVATION, KL, REPARAM, BERNOULLI, GAUSSIAN, MLP, ADAM, SCORE, IWAE,
                                    FORWARD, ELBO, ELBO_GAUSSIAN, BOUND)}
