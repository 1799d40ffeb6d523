// Compile a minivae kernel (minivae/kernels/*.cu) as plain C++, so its maths can be checked without a GPU.
//
// tests/test_fused.py builds each .cu file with
//     g++ -x c++ -include tests/cuda_host_shim.h -shared -fPIC -O2 -Dreal=float|double ...
// and calls the kernels through ctypes on NumPy arrays. The CUDA keywords become nothing (or `inline`), the math
// functions are the C++ overloads for float and double, and the launch is simulated: threadIdx, blockIdx,
// blockDim and gridDim are plain variables, one thread of a one-block grid by default (blockDim.x = gridDim.x = 1),
// so a grid-stride loop visits every index. minivae_host_set_thread() lets the test run a kernel once per
// (block, thread) of a larger grid, one after the other, to check that the loop's indices cover every element
// exactly once. Sequential runs cannot show a race; the kernels avoid them by construction (each output element is
// written by the one thread that owns it: no shared memory, no atomics).
#pragma once

#include <cmath>

#define __global__
#define __device__
#define __forceinline__ inline

// The kernels call the overloaded names (exp, tanh, log1p, expm1, sqrt), as CUDA device code does.
using std::exp;
using std::expm1;
using std::log1p;
using std::sqrt;
using std::tanh;

struct minivae_host_dim3 {
    unsigned int x;
};

static minivae_host_dim3 threadIdx = {0};
static minivae_host_dim3 blockIdx = {0};
static minivae_host_dim3 blockDim = {1};
static minivae_host_dim3 gridDim = {1};

// Make the next kernel call run as thread `thread` of block `block` in a grid of `grid` blocks of `block_dim`.
extern "C" void minivae_host_set_thread(unsigned int block, unsigned int thread, unsigned int grid,
                                        unsigned int block_dim) {
    blockIdx.x = block;
    threadIdx.x = thread;
    gridDim.x = grid;
    blockDim.x = block_dim;
}
