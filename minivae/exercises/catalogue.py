"""Every exercise, in the order a learner meets them: the pieces (:mod:`.pieces`), the estimators
(:mod:`.estimators`) and the whole model (:mod:`.capstone`)."""

from .capstone import ELBO, ELBO_GAUSSIAN, FORWARD
from .estimators import IWAE, SCORE
from .pieces import ACTIVATION, ADAM, AFFINE, BERNOULLI, GAUSSIAN, KL, MLP, REPARAM

EXERCISES = {ex.name: ex for ex in (AFFINE, ACTIVATION, KL, REPARAM, BERNOULLI, GAUSSIAN, MLP, ADAM, SCORE, IWAE,
                                    FORWARD, ELBO, ELBO_GAUSSIAN)}
