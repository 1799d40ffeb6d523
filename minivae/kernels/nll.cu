// The decoder likelihoods: the gradient of the negative log-likelihood, and its value when asked, in one pass.
//
// Compiled at run time by minivae/fused.py (FusedOps) with -Dreal=float or -Dreal=double and the constants below.
// Derivations: docs/derivations/likelihoods.md (eq. bern-nll, bern-grad, gauss-nll, gauss-grad) and
// docs/derivations/reparam.md (eq. logvar-clamp).
//
// Layout. The decoder's (S, N, D) arrays (logits, mean, their gradients) are read as S N rows of D, row r = s N + n,
// rows `ld_*` elements apart, elements within a row contiguous: a column slice of the decoder output (the mean of a
// per-example Gaussian) needs no copy. The data x (N, D) is shared by the S samples: row r reads x's row r % N.
// The per-element NLL goes to `nll`, a contiguous scratch buffer of S N D elements, summed afterwards by the caller
// (xp.sum): no atomics, and the same sum on every run. It is written only when need_loss is non-zero.

#ifndef real
#error "compile with -Dreal=float or -Dreal=double (see minivae.fused.compile_options)"
#endif
#ifndef LOG_2PI
#error "compile with -DLOG_2PI=... (minivae.likelihoods.LOG_2PI, see minivae.fused.compile_options)"
#endif

#include "log_var_clamp.cuh"  // clamp_log_var, inside_clamp (eq. logvar-clamp)

// For every element (s, n, d), with l = logits[s, n, d] and the shared x[n, d]:
//     dlogits = scale (sigma(l) - x) = scale (tanh(l / 2) / 2 + 1/2 - x)     (eq. bern-grad, sigmoid-fwd)
//     nll     = softplus(l) - x l = max(l, 0) + log1p(exp(-|l|)) - x l      (eq. bern-nll, softplus-fwd)
// One pass instead of four for the gradient, and of about six more for the loss.
// twin: minivae.ops.PlainOps.bernoulli_grad
extern "C" __global__ void bernoulli_grad(long long rows, long long N, long long D, const real* __restrict__ logits,
                                          long long ld_logits, const real* __restrict__ x, long long ld_x, real scale,
                                          real* __restrict__ dlogits, long long ld_dlogits, int need_loss,
                                          real* __restrict__ nll) {
    const long long size = rows * D;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const long long r = i / D, d = i % D, n = r % N;
        const real l = logits[r * ld_logits + d];
        const real target = x[n * ld_x + d];
        dlogits[r * ld_dlogits + d] = scale * (real(0.5) * tanh(real(0.5) * l) + (real(0.5) - target));
        if (need_loss) {
            const real softplus = (l > real(0) ? l : real(0)) + log1p(exp(-(l < real(0) ? -l : l)));
            nll[i] = softplus - target * l;
        }
    }
}

// For every element (s, n, d), with m = mean[s, n, d], the shared x[n, d] and the log-variance read at
// log_var[r * lv_row_stride + d * lv_col_stride] (strides 0, 0: one scalar, fixed or shared; 0, 1: one per data
// dimension; a row stride and 1: one per element, a column slice of the decoder output):
//     log_var  = clip(log_var, -L, L)                                       (eq. logvar-clamp)
//     dmean    = scale (m - x) / sigma^2                                    (eq. gauss-grad)
//     dlog_var = scale [-L < log_var < L] 1/2 (1 - (m - x)^2 / sigma^2)     (eq. gauss-grad, logvar-clamp)
//     nll      = 1/2 (log 2 pi + log_var + (m - x)^2 / sigma^2)             (eq. gauss-nll)
// (m - x)^2 / sigma^2 is formed as (m - x) ((m - x) / sigma^2), never (m - x)^2 first, so it overflows only when
// the term itself does. dlog_var is written per element (rows `ld_dlog_var` apart); the caller sums it over the
// axes along which the log-variance was broadcast. One pass instead of about nine (twelve with the loss).
// twin: minivae.ops.PlainOps.gaussian_grad
extern "C" __global__ void gaussian_grad(long long rows, long long N, long long D, const real* __restrict__ mean,
                                         long long ld_mean, const real* __restrict__ log_var,
                                         long long lv_row_stride, long long lv_col_stride,
                                         const real* __restrict__ x, long long ld_x, real scale,
                                         real* __restrict__ dmean, long long ld_dmean, real* __restrict__ dlog_var,
                                         long long ld_dlog_var, int need_loss, real* __restrict__ nll) {
    const long long size = rows * D;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const long long r = i / D, d = i % D, n = r % N;
        const real raw = log_var[r * lv_row_stride + d * lv_col_stride];
        const real clamped = clamp_log_var(raw);
        const real diff = mean[r * ld_mean + d] - x[n * ld_x + d];
        const real scaled = diff * exp(-clamped);  // (m - x) / sigma^2
        dmean[r * ld_dmean + d] = scale * scaled;
        dlog_var[r * ld_dlog_var + d] = real(0.5) * (real(1) - diff * scaled) * scale * inside_clamp(raw);
        if (need_loss) {
            nll[i] = real(0.5) * (real(LOG_2PI) + clamped + diff * scaled);
        }
    }
}
