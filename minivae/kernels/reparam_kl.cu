// The encoder's head: clamp, reparameterization and KL in one kernel forward, their gradients in one kernel backward.
//
// Compiled at run time by minivae/fused.py (FusedOps) with -Dreal=float or -Dreal=double and the constants below.
// Derivations: docs/derivations/reparam.md (eq. logvar-clamp, reparam-fwd, reparam-bwd) and docs/derivations/kl.md
// (eq. kl-fwd, kl-bwd).
//
// Layout. The encoder output is an (N, 2K) matrix [mu, log_var_raw] whose rows are `ld_head` elements apart; the
// kernels take two base pointers into it (mu = column 0, log_var_raw = column K), so column-slice views need no
// copy. The (S, N, K) arrays (noise, z, dz) are read as S N rows of K, row r = s N + n, rows `ld_*` elements apart,
// elements within a row contiguous. Each output element is written by one thread, sums run in a fixed order: no
// atomics, and the same result on every run.

#ifndef real
#error "compile with -Dreal=float or -Dreal=double (see minivae.fused.compile_options)"
#endif

#include "log_var_clamp.cuh"  // clamp_log_var, inside_clamp (eq. logvar-clamp)

// For every example n (one thread each, looping over its K latent dimensions and S samples):
//     log_var = clip(log_var_raw, -L, L)                              (eq. logvar-clamp)
//     z[s, n] = mu + exp(log_var / 2) * noise[s, n]   for s < S       (eq. reparam-fwd)
//     kl[n]   = 1/2 sum_k (mu^2 + expm1(log_var) - log_var)           (eq. kl-fwd)
// One launch instead of about sixteen array passes (the clamp's mask and clip, exp, multiply, add, the KL's seven).
// twin: minivae.ops.PlainOps.head_forward
extern "C" __global__ void head_forward(long long S, long long N, long long K, const real* mu,
                                        const real* log_var_raw, long long ld_head, const real* __restrict__ noise,
                                        long long ld_noise, real* __restrict__ z, long long ld_z,
                                        real* __restrict__ kl) {
    for (long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x; n < N;
         n += (long long)blockDim.x * gridDim.x) {
        real total = real(0);
        for (long long k = 0; k < K; ++k) {
            const real m = mu[n * ld_head + k];
            const real log_var = clamp_log_var(log_var_raw[n * ld_head + k]);
            const real sigma = exp(real(0.5) * log_var);  // the standard deviation (std in reparam.py)
            for (long long s = 0; s < S; ++s) {
                const long long r = s * N + n;
                z[r * ld_z + k] = m + sigma * noise[r * ld_noise + k];
            }
            // sigma^2 - 1 - log sigma^2 as expm1(log_var) - log_var: never below 0 near log_var = 0
            total += m * m + (expm1(log_var) - log_var);
        }
        kl[n] = real(0.5) * total;
    }
}

// For every (n, k) (one thread each, looping over the S samples), with the KL's weight dkl for every example:
//     dmu          = sum_s dz[s] + dkl mu                             (eq. reparam-bwd + eq. kl-bwd)
//     dlog_var_raw = [-L < log_var_raw < L] (1/2 sigma sum_s dz[s] noise[s] + 1/2 dkl (exp(log_var) - 1))
//                                                       (eq. reparam-bwd + eq. kl-bwd, then eq. logvar-clamp)
// written into the (N, 2K) gradient of the encoder output, dmu = column 0 and dlog_var_raw = column K of rows
// `ld_dhead` apart. sigma and exp(log_var) are recomputed from log_var_raw, which the kernel reads anyway for the
// clamp: one exp per element is cheaper than writing an (N, K) buffer in the forward and reading it back here.
// One launch instead of about fifteen array passes (two sums over s, the KL's gradient, two sums, the mask, a join).
// twin: minivae.ops.PlainOps.head_backward
extern "C" __global__ void head_backward(long long S, long long N, long long K, const real* __restrict__ dz,
                                         long long ld_dz, real dkl, const real* mu, const real* log_var_raw,
                                         long long ld_head, const real* __restrict__ noise, long long ld_noise,
                                         real* dmu, real* dlog_var_raw, long long ld_dhead) {
    const long long size = N * K;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const long long n = i / K, k = i % K;
        const real raw = log_var_raw[n * ld_head + k];
        const real log_var = clamp_log_var(raw);
        const real sigma = exp(real(0.5) * log_var);  // the standard deviation (std in reparam.py)
        real sum_dz = real(0), sum_dz_noise = real(0);
        for (long long s = 0; s < S; ++s) {  // z_s depends on mu and log_var for every sample s
            const long long r = s * N + n;
            const real g = dz[r * ld_dz + k];
            sum_dz += g;
            sum_dz_noise += g * noise[r * ld_noise + k];
        }
        const real dmu_from_z = sum_dz;                                      // dz_s / dmu = 1
        const real dmu_from_kl = dkl * mu[n * ld_head + k];                  // d/dmu of mu^2 / 2
        const real dlog_var_from_z = real(0.5) * sigma * sum_dz_noise;       // dz_s / dlog_var = sigma noise_s / 2
        const real dlog_var_from_kl = real(0.5) * dkl * (exp(log_var) - real(1));  // d/dlog_var of (e^v - v) / 2
        dmu[n * ld_dhead + k] = dmu_from_z + dmu_from_kl;  // mu feeds both z and the KL
        dlog_var_raw[n * ld_dhead + k] = (dlog_var_from_z + dlog_var_from_kl) * inside_clamp(raw);
    }
}
