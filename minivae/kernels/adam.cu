// The Adam update of every parameter at once, over the flat parameter, gradient and moment buffers.
//
// Compiled at run time by minivae/fused.py (FusedOps) with -Dreal=float or -Dreal=double.
// Derivation: docs/derivations/adam.md (eq. adam, and eq. adam-sums for the form computed here).

#ifndef real
#error "compile with -Dreal=float or -Dreal=double (see minivae.fused.compile_options)"
#endif

// For every parameter i, with the moments kept as decaying sums M = m / (1 - beta1), V = v / (1 - beta2)
// and the bias corrections folded into lr_t and eps_t by the caller (minivae.optim.Adam):
//     M     <- beta1 M + g                                              (eq. adam-sums)
//     V     <- beta2 V + g^2
//     theta <- theta - lr_t M / (sqrt(V) + eps_t)
// One pass reading four buffers and writing three, instead of ten passes over the flat buffers.
// twin: minivae.ops.PlainOps.adam
extern "C" __global__ void adam(long long size, real* __restrict__ data, const real* __restrict__ grad,
                                real* __restrict__ m, real* __restrict__ v, real beta1, real beta2, real lr_t,
                                real eps_t) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const real g = grad[i];
        const real g2 = g * g;
        const real m_new = beta1 * m[i] + g;
        const real v_new = beta2 * v[i] + g2;
        m[i] = m_new;
        v[i] = v_new;
        data[i] -= lr_t * (m_new / (sqrt(v_new) + eps_t));
    }
}
