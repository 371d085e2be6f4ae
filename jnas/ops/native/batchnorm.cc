// Batch-norm kernels for XLA's CPU backend, called through the XLA FFI.
//
// Built with depthwise.cc by jnas/ops/native/__init__.py; jnas/ops/batchnorm.py composes them
// into a training-mode batch norm (forward: stats + affine; backward: dsums + affine2) and
// falls back to plain XLA where they are unavailable. Why these exist: XLA's CPU loops for
// batch norm's per-channel broadcasts and reductions run at a fifth of the machine's memory
// bandwidth and recompute the normalisation inside several backward fusions; these read each
// operand once per pass.
//
// Layout: the last axis is the channel axis (C); the `rank` trailing axes of the first operand
// are one instance, and any axes before them (added by vmap) index independent groups (G).
// Per-channel operands and results have shape [groups..., C], with groups either G or 1
// (broadcast). M is the number of rows (positions) of one instance.
//   jnas_bn_stats:   (x)              -> mean[g,c] = E_m x,  meansq[g,c] = E_m x^2
//   jnas_bn_dsums:   (u, x)           -> mean[g,c] = E_m u,  meanux[g,c] = E_m u*x
//   jnas_bn_affine:  (x, a, b)        -> y = a*x + b
//   jnas_bn_affine2: (u, v, p, q, r)  -> y = p*u + q*v + r
// Reductions accumulate in float (64 values per accumulator) and then in double.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <numeric>
#include <vector>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jnas::ParallelFor;

constexpr int64_t kSmall = 1 << 15;  // elements below which one thread does it all
constexpr int64_t kFlush = 64;       // values summed in float per accumulator before double

template <typename B>
int64_t Count(const B& b) {
  return static_cast<int64_t>(b.element_count());
}

struct Shape {
  int64_t g = 1, m = 1, c = 1;
  // The loops run over one instance's m * c values as a flat stream, a tile of `tile` values
  // (`tile_rows` rows; a multiple of c and of 16 floats, at least 256) at a time: per-channel
  // operands are laid out along a tile, so the inner loops are long, contiguous and vectorise,
  // with no per-row overhead (c is as small as 16-36 here).
  int64_t tile = 1, tile_rows = 1;
};

bool GetShape(ffi::Span<const int64_t> dims, int64_t rank, Shape* s) {
  const int64_t n = dims.size();
  if (rank < 1 || rank > n) return false;
  s->g = 1;
  s->m = 1;
  for (int64_t i = 0; i < n - rank; ++i) s->g *= dims[i];
  for (int64_t i = n - rank; i < n - 1; ++i) s->m *= dims[i];
  s->c = dims[n - 1];
  if (s->c < 1) return false;
  const int64_t period = std::lcm<int64_t>(s->c, 16);
  s->tile = period * ((256 + period - 1) / period);
  s->tile_rows = s->tile / s->c;
  return true;
}

// Groups of a per-channel operand: G (one row of C per group) or 1 (shared). -1: bad shape.
int64_t ParamStride(int64_t elements, const Shape& s) {
  if (elements == s.c) return 0;
  if (elements == s.g * s.c) return s.c;
  return -1;
}

int64_t Chunks(ffi::ThreadPool& pool, const Shape& s, int64_t per_thread) {
  const int64_t tiles = (s.m + s.tile_rows - 1) / s.tile_rows;
  if (s.g * s.m * s.c < kSmall) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(per_thread * pool.num_threads(), tiles));
}

// Splits each group's rows into `chunks` runs of whole tiles: body(task, g, row_begin, row_end).
template <typename F>
void ForChunks(ffi::ThreadPool& pool, const Shape& s, int64_t chunks, const F& body) {
  const int64_t tiles = (s.m + s.tile_rows - 1) / s.tile_rows;
  ParallelFor(pool, s.g * chunks, [&](int64_t task) {
    const int64_t g = task / chunks, k = task % chunks;
    const int64_t lo = std::min(s.m, tiles * k / chunks * s.tile_rows);
    const int64_t hi = std::min(s.m, tiles * (k + 1) / chunks * s.tile_rows);
    body(task, g, lo, hi);
  });
}

// Per-channel operand p (groups stride sp) repeated along a tile, for each group.
std::vector<float> Tiled(const float* p, int64_t sp, const Shape& s) {
  const int64_t groups = sp == 0 ? 1 : s.g;
  std::vector<float> t(groups * s.tile);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t q = 0; q < s.tile; ++q) t[g * s.tile + q] = p[g * sp + q % s.c];
  return t;
}

// out1[g,c] = E_m f1(u, x), out2[g,c] = E_m f2(u, x) for the two reduction kernels.
template <bool kSquare>
void MeanPair(ffi::ThreadPool& pool, const float* u, const float* x, const Shape& s,
              float* out1, float* out2) {
  const int64_t c = s.c, tile = s.tile;
  const int64_t chunks = Chunks(pool, s, 8);
  std::vector<double> acc(s.g * chunks * 2 * tile, 0.0);
  ForChunks(pool, s, chunks, [&](int64_t task, int64_t g, int64_t lo, int64_t hi) {
    double* d1 = &acc[task * 2 * tile];
    double* d2 = d1 + tile;
    std::vector<float> f(2 * tile, 0.0f);
    float* f1 = f.data();
    float* f2 = f1 + tile;
    const int64_t base = g * s.m * c;
    int64_t pending = 0;
    for (int64_t r = lo; r < hi; r += s.tile_rows) {
      const int64_t n = (std::min(hi, r + s.tile_rows) - r) * c;
      const float* ur = u + base + r * c;
      if (kSquare) {
        for (int64_t q = 0; q < n; ++q) {
          f1[q] += ur[q];
          f2[q] += ur[q] * ur[q];
        }
      } else {
        const float* xr = x + base + r * c;
        for (int64_t q = 0; q < n; ++q) {
          f1[q] += ur[q];
          f2[q] += ur[q] * xr[q];
        }
      }
      if (++pending == kFlush || r + s.tile_rows >= hi) {
        for (int64_t q = 0; q < tile; ++q) {
          d1[q] += f1[q];
          d2[q] += f2[q];
        }
        std::fill(f.begin(), f.end(), 0.0f);
        pending = 0;
      }
    }
  });
  const double inv_m = s.m > 0 ? 1.0 / static_cast<double>(s.m) : 0.0;
  for (int64_t g = 0; g < s.g; ++g) {
    std::vector<double> a(c, 0.0), b(c, 0.0);
    for (int64_t k = 0; k < chunks; ++k) {
      const double* d1 = &acc[(g * chunks + k) * 2 * tile];
      for (int64_t q = 0; q < tile; ++q) {
        a[q % c] += d1[q];
        b[q % c] += d1[tile + q];
      }
    }
    for (int64_t ch = 0; ch < c; ++ch) {
      out1[g * c + ch] = static_cast<float>(a[ch] * inv_m);
      out2[g * c + ch] = static_cast<float>(b[ch] * inv_m);
    }
  }
}

ffi::Error StatsImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> mean,
                     ffi::ResultBuffer<ffi::F32> meansq, int64_t rank) {
  Shape s;
  if (!GetShape(x.dimensions(), rank, &s) || Count(*mean) != s.g * s.c ||
      Count(*meansq) != s.g * s.c)
    return ffi::Error::InvalidArgument("jnas_bn_stats: bad shapes");
  MeanPair<true>(pool, x.typed_data(), nullptr, s, mean->typed_data(),
                 meansq->typed_data());
  return ffi::Error::Success();
}

ffi::Error DsumsImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> u, ffi::Buffer<ffi::F32> x,
                     ffi::ResultBuffer<ffi::F32> mean, ffi::ResultBuffer<ffi::F32> meanux,
                     int64_t rank) {
  Shape s;
  if (!GetShape(u.dimensions(), rank, &s) || Count(x) != Count(u) ||
      Count(*mean) != s.g * s.c || Count(*meanux) != s.g * s.c)
    return ffi::Error::InvalidArgument("jnas_bn_dsums: bad shapes");
  MeanPair<false>(pool, u.typed_data(), x.typed_data(), s,
                  mean->typed_data(), meanux->typed_data());
  return ffi::Error::Success();
}

ffi::Error AffineImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                      ffi::ResultBuffer<ffi::F32> y, int64_t rank) {
  Shape s;
  if (!GetShape(x.dimensions(), rank, &s) || Count(*y) != Count(x))
    return ffi::Error::InvalidArgument("jnas_bn_affine: bad shapes");
  const int64_t sa = ParamStride(Count(a), s), sb = ParamStride(Count(b), s);
  if (sa < 0 || sb < 0) return ffi::Error::InvalidArgument("jnas_bn_affine: bad parameters");
  const std::vector<float> at = Tiled(a.typed_data(), sa, s), bt = Tiled(b.typed_data(), sb, s);
  const float* xp = x.typed_data();
  float* yp = y->typed_data();
  const int64_t c = s.c;
  ForChunks(pool, s, Chunks(pool, s, 4), [&](int64_t, int64_t g, int64_t lo, int64_t hi) {
    const float* ag = &at[sa ? g * s.tile : 0];
    const float* bg = &bt[sb ? g * s.tile : 0];
    for (int64_t r = lo; r < hi; r += s.tile_rows) {
      const int64_t n = (std::min(hi, r + s.tile_rows) - r) * c, off = (g * s.m + r) * c;
      const float* xr = xp + off;
      float* yr = yp + off;
      for (int64_t q = 0; q < n; ++q) yr[q] = xr[q] * ag[q] + bg[q];
    }
  });
  return ffi::Error::Success();
}

ffi::Error Affine2Impl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> u, ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> p,
                       ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> r, ffi::ResultBuffer<ffi::F32> y,
                       int64_t rank) {
  Shape s;
  if (!GetShape(u.dimensions(), rank, &s) || Count(v) != Count(u) ||
      Count(*y) != Count(u))
    return ffi::Error::InvalidArgument("jnas_bn_affine2: bad shapes");
  const int64_t sp = ParamStride(Count(p), s), sq = ParamStride(Count(q), s),
                sr = ParamStride(Count(r), s);
  if (sp < 0 || sq < 0 || sr < 0)
    return ffi::Error::InvalidArgument("jnas_bn_affine2: bad parameters");
  const std::vector<float> pt = Tiled(p.typed_data(), sp, s), qt = Tiled(q.typed_data(), sq, s),
                           rt = Tiled(r.typed_data(), sr, s);
  const float *up = u.typed_data(), *vp = v.typed_data();
  float* yp = y->typed_data();
  const int64_t c = s.c;
  ForChunks(pool, s, Chunks(pool, s, 4), [&](int64_t, int64_t g, int64_t lo, int64_t hi) {
    const float* pg = &pt[sp ? g * s.tile : 0];
    const float* qg = &qt[sq ? g * s.tile : 0];
    const float* rg = &rt[sr ? g * s.tile : 0];
    for (int64_t row = lo; row < hi; row += s.tile_rows) {
      const int64_t n = (std::min(hi, row + s.tile_rows) - row) * c, off = (g * s.m + row) * c;
      const float *ur = up + off, *vr = vp + off;
      float* yr = yp + off;
      for (int64_t k = 0; k < n; ++k) yr[k] = pg[k] * ur[k] + qg[k] * vr[k] + rg[k];
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JnasBnStats, StatsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("rank"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JnasBnDsums, DsumsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("rank"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JnasBnAffine, AffineImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("rank"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JnasBnAffine2, Affine2Impl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("rank"));
