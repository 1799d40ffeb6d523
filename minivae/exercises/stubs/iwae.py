"""Exercise: the importance-weighted bound and its gradient. Check with: minivae exercise check iwae THIS_FILE"""

import numpy as np


def iwae_bound(log_w, dbound):
    r"""bound_n = log (1/S) sum_s w_sn from the log-weights log_w, and its gradient given dbound = dL/dbound.

    The log-weights of a real model are near -1000 or beyond: exp(log_w) underflows or overflows, so the sum is
    taken in log space, without forming any exp that can. S samples, N examples.
    Shapes: log_w (S, N), dbound (N,).
    Returns (bound, dlog_w): bound (N,), dlog_w (S, N).
    Derivation: docs/derivations/iwae.md.
    """
    raise NotImplementedError("write the bound and derive dlog_w, then replace this line")
