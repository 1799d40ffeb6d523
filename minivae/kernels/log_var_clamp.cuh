// The clamp of a log-variance, shared by the encoder's head (reparam_kl.cu) and the Gaussian decoder (nll.cu).
//
// Included by those files; compiled with them (minivae.fused.compile_options puts this directory on the include
// path and defines LOG_VAR_LIMIT = minivae.reparam.LOG_VAR_LIMIT). Derivation: docs/derivations/reparam.md
// (eq. logvar-clamp). twin: minivae.reparam.clamp_log_var_forward and clamp_log_var_backward.

#ifndef MINIVAE_LOG_VAR_CLAMP_CUH
#define MINIVAE_LOG_VAR_CLAMP_CUH

#ifndef LOG_VAR_LIMIT
#error "compile with -DLOG_VAR_LIMIT=... (minivae.reparam.LOG_VAR_LIMIT, see minivae.fused.compile_options)"
#endif

// clip(v, -L, L), L = LOG_VAR_LIMIT                                  (eq. logvar-clamp)
__device__ __forceinline__ real clamp_log_var(real v) {
    const real limit = real(LOG_VAR_LIMIT);
    return v < -limit ? -limit : (v > limit ? limit : v);
}

// [-L < v < L]: where the clip is the identity and passes the gradient   (eq. logvar-clamp)
__device__ __forceinline__ real inside_clamp(real v) {
    const real limit = real(LOG_VAR_LIMIT);
    return (v > -limit && v < limit) ? real(1) : real(0);
}

#endif  // MINIVAE_LOG_VAR_CLAMP_CUH
