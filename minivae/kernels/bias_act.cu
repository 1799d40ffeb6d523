// Bias + activation, forward and backward, in place: the elementwise work around each hidden layer's matrix product.
//
// Compiled at run time by minivae/fused.py (FusedOps) with -Dreal=float or -Dreal=double and the constants below.
// Derivations: docs/derivations/layers.md (eq. affine-fwd, relu, leaky-relu, tanh, sigmoid-fwd, softplus-fwd and,
// for the backward, act-from-output). Every loop is a grid-stride loop: thread t of the grid handles elements
// t, t + T, t + 2T, ... (T threads in all), so any launch size covers every element exactly once.

#ifndef real
#error "compile with -Dreal=float or -Dreal=double (see minivae.fused.compile_options)"
#endif
#ifndef LEAKY_SLOPE
#error "compile with -DLEAKY_SLOPE=... (minivae.layers.LEAKY_SLOPE, see minivae.fused.compile_options)"
#endif

// The activation codes, as in minivae.fused.ACTIVATION_CODES.
#define ACT_IDENTITY 0
#define ACT_RELU 1
#define ACT_LEAKY_RELU 2
#define ACT_TANH 3
#define ACT_SIGMOID 4
#define ACT_SOFTPLUS 5

// phi(a) for the activation `code`.
__device__ __forceinline__ real activate(real a, int code) {
    switch (code) {
    case ACT_RELU:  // max(a, 0)                                     (eq. relu)
        return a < real(0) ? real(0) : a;
    case ACT_LEAKY_RELU:  // a if a > 0 else alpha a                   (eq. leaky-relu)
        return a > real(0) ? a : real(LEAKY_SLOPE) * a;
    case ACT_TANH:  //                                               (eq. tanh)
        return tanh(a);
    case ACT_SIGMOID:  // (1 + tanh(a / 2)) / 2, finite for every a    (eq. sigmoid-fwd)
        return (tanh(a * real(0.5)) + real(1)) * real(0.5);
    case ACT_SOFTPLUS:  // max(a, 0) + log1p(exp(-|a|))                 (eq. softplus-fwd)
        return (a > real(0) ? a : real(0)) + log1p(exp(-(a < real(0) ? -a : a)));
    default:  // ACT_IDENTITY
        return a;
    }
}

// phi'(a) written in the output h = phi(a) alone                    (eq. act-from-output)
__device__ __forceinline__ real activation_slope(real h, int code) {
    switch (code) {
    case ACT_RELU:  // [h > 0]
        return h > real(0) ? real(1) : real(0);
    case ACT_LEAKY_RELU:  // 1 if h > 0 else alpha
        return h > real(0) ? real(1) : real(LEAKY_SLOPE);
    case ACT_TANH:  // 1 - h^2
        return real(1) - h * h;
    case ACT_SIGMOID:  // h (1 - h)
        return h * (real(1) - h);
    case ACT_SOFTPLUS:  // sigma(a) = 1 - exp(-h), as -expm1(-h): accurate for small h
        return -expm1(-h);
    default:  // ACT_IDENTITY
        return real(1);
    }
}

// a[n, j] <- phi(a[n, j] + b[j]) for the (rows, cols) C-contiguous matrix a and the (cols,) bias b.
// (eq. affine-fwd: the bias half of a = h W + b; the product itself is cuBLAS's.)
// One pass instead of two or four (the bias, then one to three for the activation).
// twin: minivae.ops.PlainOps.bias_act
extern "C" __global__ void bias_act_forward(long long rows, long long cols, real* a, const real* __restrict__ b,
                                            int code) {
    const long long size = rows * cols;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        a[i] = activate(a[i] + b[i % cols], code);
    }
}

// dh[i] <- dh[i] * phi'(a[i]), the derivative written in h[i] = phi(a[i])   (eq. act-from-output)
// over `size` elements of C-contiguous arrays of one shape. One pass instead of up to three.
// twin: minivae.ops.PlainOps.act_backward
extern "C" __global__ void act_backward(long long size, real* __restrict__ dh, const real* __restrict__ h, int code) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        dh[i] = dh[i] * activation_slope(h[i], code);
    }
}
