// Squared pairwise distances on the GPU: a tiled direct-difference kernel.
//
// Why not the Gram product on tensor cores: TF32 breaks the distances, and a float32 Gram
// identity cancels for near-duplicate rows unless the rows are centred, and a centre computed
// from the rows moves with an adversarial row. Direct differences are exact in the subtraction
// (Sterbenz) whatever the inputs, at one FSUB + one FFMA per pair and coordinate.
//
// Layout: 64 x 64 row tiles, upper tile pairs only; a block of 256 threads computes a 4 x 4
// micro-tile of pairs per thread (only the upper micro-tiles of a diagonal tile), staging
// 32-column slabs of both row tiles in shared memory. Block y of a tile pair walks the chunks
// y, y + Y, y + 2Y, ... of 1024 columns, summing a chunk in float32 registers and its chunks in
// float64, and writes its total per pair to its own slot of a workspace; a second kernel adds
// the Y slots in order. So the result is the same bits on every run (a float64 atomicAdd per
// block would add them in whatever order the blocks finish).
//
// While staging a chunk the block notes, per row, whether the chunk holds a non-finite value
// or a tiny one (0 < |v| < 2^-39). A pair's chunk whose float32 sum is not finite is +inf at
// once when one of its rows has a non-finite value (a Byzantine NaN row costs nothing extra)
// and is recomputed in float64 otherwise (a square overflowing float32). A sum under 2^-60 with
// a tiny value in either row is recomputed too: squares of differences under 2^-63 underflow
// float32, and only values under 2^-39 have such differences (a difference of two floats is at
// least 2^-24 of the larger one, or 0).
#include <algorithm>
#include <cmath>

#include "kernels_cuda.h"

namespace robustagg {
namespace cuda {
namespace {

constexpr int kTile = 64;     // rows per tile
constexpr int kSlab = 32;     // columns staged in shared memory at a time
constexpr int kChunk = 1024;  // columns summed in float32 before going to float64
constexpr int kThreads = 256;
constexpr int kPad = 4;       // keeps float4 rows 16-byte aligned and spreads the stores

__device__ __forceinline__ void tile_pair(int64_t p, int64_t tiles, int64_t& I, int64_t& J) {
  I = 0;
  while (p >= tiles - I) {
    p -= tiles - I;
    ++I;
  }
  J = I + p;
}

// Row flags of one chunk, per tile row: a non-finite value, a tiny value.
struct ChunkFlags {
  int nonfinite[kTile];
  int tiny[kTile];
};

__device__ __forceinline__ void load_slab(float (*S)[kTile + kPad], ChunkFlags& flags,
                                          const float* __restrict__ x, int64_t n, int64_t d,
                                          int64_t row0, int64_t col0, int64_t col_end) {
  for (int e = threadIdx.x; e < kTile * kSlab; e += kThreads) {
    const int r = e / kSlab, k = e % kSlab;  // a warp reads 32 consecutive columns of one row
    const int64_t row = row0 + r, col = col0 + k;
    const float v = (row < n && col < col_end) ? x[row * d + col] : 0.0f;
    S[k][r] = v;
    // Racing stores of the same 1 are benign: the flags are read after a barrier.
    if (!isfinite(v)) flags.nonfinite[r] = 1;
    else if (v != 0.0f && fabsf(v) < 0x1p-39f) flags.tiny[r] = 1;
  }
}

__device__ double exact_chunk(const float* __restrict__ a, const float* __restrict__ b,
                              int64_t len) {
  double s = 0.0;
  for (int64_t k = 0; k < len; ++k) {
    const double t = static_cast<double>(a[k]) - static_cast<double>(b[k]);
    s += t * t;
  }
  return s;
}

__global__ void __launch_bounds__(kThreads)
    pairwise_kernel(const float* __restrict__ x, int64_t n, int64_t d, int64_t tiles,
                    int64_t chunks, double* __restrict__ partials) {
  __shared__ __align__(16) float As[kSlab][kTile + kPad];
  __shared__ __align__(16) float Bs[kSlab][kTile + kPad];
  __shared__ ChunkFlags fa, fb;
  int64_t I, J;
  tile_pair(blockIdx.x, tiles, I, J);
  const bool diag = I == J;
  // micro-tile (u, v) of this thread: rows I*64 + 4u.., columns J*64 + 4v..
  int u = threadIdx.x / 16, v = threadIdx.x % 16;
  bool active = true;
  if (diag) {  // the 136 upper micro-tiles (u <= v) of the 16 x 16 grid, one per thread
    int q = threadIdx.x;
    u = 0;
    while (u < 16 && q >= 16 - u) {
      q -= 16 - u;
      ++u;
    }
    active = u < 16;
    v = u + q;
  }
  const float(*Bsrc)[kTile + kPad] = diag ? As : Bs;
  const ChunkFlags& fsrc = diag ? fa : fb;
  double total[4][4] = {};
  for (int64_t ch = blockIdx.y; ch < chunks; ch += gridDim.y) {
    const int64_t c0 = ch * kChunk, c1 = min(c0 + kChunk, d);
    for (int e = threadIdx.x; e < kTile; e += kThreads)
      fa.nonfinite[e] = fa.tiny[e] = fb.nonfinite[e] = fb.tiny[e] = 0;
    __syncthreads();
    float acc[4][4] = {};
    for (int64_t s = c0; s < c1; s += kSlab) {
      load_slab(As, fa, x, n, d, I * kTile, s, c1);
      if (!diag) load_slab(Bs, fb, x, n, d, J * kTile, s, c1);
      __syncthreads();
      if (active) {
#pragma unroll 8
        for (int k = 0; k < kSlab; ++k) {
          const float4 a = *reinterpret_cast<const float4*>(&As[k][4 * u]);
          const float4 b = *reinterpret_cast<const float4*>(&Bsrc[k][4 * v]);
          const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
          for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
              const float t = av[r] - bv[c];
              acc[r][c] = fmaf(t, t, acc[r][c]);
            }
        }
      }
      __syncthreads();
    }
    if (active) {
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          double p = acc[r][c];
          const int ri = 4 * u + r, rj = 4 * v + c;
          const int64_t i = I * kTile + ri, j = J * kTile + rj;
          if (i >= j || j >= n) continue;  // the lower half of a diagonal micro-tile is unused
          if (!isfinite(p)) {
            p = (fa.nonfinite[ri] || fsrc.nonfinite[rj])
                    ? INFINITY
                    : exact_chunk(x + i * d + c0, x + j * d + c0, c1 - c0);
          } else if (p < 0x1p-60 && (fa.tiny[ri] || fsrc.tiny[rj])) {
            p = exact_chunk(x + i * d + c0, x + j * d + c0, c1 - c0);
          }
          total[r][c] += p;
        }
    }
    __syncthreads();  // the flags are reset for the next chunk
  }
  if (!active) return;
  double* slot = partials + blockIdx.y * n * n;
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int64_t i = I * kTile + 4 * u + r, j = J * kTile + 4 * v + c;
      if (i < j && j < n) slot[i * n + j] = total[r][c];
    }
}

// out = the slots added in order (the same bits every run), mirrored, zero diagonal,
// non-finite (NaN as well as overflow) -> +inf.
__global__ void finalize_kernel(const double* __restrict__ partials, int64_t slots,
                                double* __restrict__ out, int64_t n) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n * n) return;
  const int64_t i = e / n, j = e % n;
  if (i == j) {
    out[e] = 0.0;
  } else if (i < j) {
    double s = 0.0;
    for (int64_t y = 0; y < slots; ++y) s += partials[y * n * n + e];
    if (!isfinite(s)) s = INFINITY;
    out[e] = s;
    out[j * n + i] = s;
  }
}

// Blocks per tile pair: enough to fill the GPU ~4 deep, few enough that each sums many chunks.
int64_t blocks_per_pair(int64_t n, int64_t d) {
  const int64_t tiles = (n + kTile - 1) / kTile, pairs = tiles * (tiles + 1) / 2;
  const int64_t chunks = (d + kChunk - 1) / kChunk;
  int device = 0, sms = 1;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  return std::max<int64_t>(1, std::min<int64_t>(
      {chunks, (4 * static_cast<int64_t>(sms) + pairs - 1) / pairs, 65535}));
}

}  // namespace

int64_t pairwise_workspace(int64_t n, int64_t d) {
  return n < 2 ? 0 : blocks_per_pair(n, d) * n * n;
}

cudaError_t pairwise_sq_distances(const float* x, int64_t n, int64_t d, double* out,
                                  double* workspace, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int64_t tiles = (n + kTile - 1) / kTile, pairs = tiles * (tiles + 1) / 2;
  const int64_t chunks = (d + kChunk - 1) / kChunk;
  const int64_t slots = n < 2 ? 0 : blocks_per_pair(n, d);
  if (slots > 0) {
    // Every slot of the upper triangle is written by its block, but d = 0 launches none.
    cudaError_t err = cudaMemsetAsync(workspace, 0, sizeof(double) * slots * n * n, stream);
    if (err != cudaSuccess) return err;
    if (chunks > 0) {
      const dim3 grid(static_cast<unsigned>(pairs), static_cast<unsigned>(slots));
      pairwise_kernel<<<grid, kThreads, 0, stream>>>(x, n, d, tiles, chunks, workspace);
      err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
  }
  const int64_t cells = n * n;
  finalize_kernel<<<static_cast<unsigned>((cells + 255) / 256), 256, 0, stream>>>(
      workspace, slots, out, n);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace robustagg
