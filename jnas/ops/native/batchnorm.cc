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
// Reductions accumulate in float over blocks of rows and in double across blocks.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jnas::ParallelFor;

constexpr int64_t kSmall = 1 << 15;  // elements below which one thread does it all
constexpr int64_t kBlock = 64;       // rows accumulated in float before adding to double

template <typename B>
int64_t Count(const B& b) {
  return static_cast<int64_t>(b.element_count());
}

struct Shape {
  int64_t g = 1, m = 1, c = 1;
};

bool GetShape(ffi::Span<const int64_t> dims, int64_t rank, Shape* s) {
  const int64_t n = dims.size();
  if (rank < 1 || rank > n) return false;
  s->g = 1;
  s->m = 1;
  for (int64_t i = 0; i < n - rank; ++i) s->g *= dims[i];
  for (int64_t i = n - rank; i < n - 1; ++i) s->m *= dims[i];
  s->c = dims[n - 1];
  return true;
}

// Groups of a per-channel operand: G (one row of C per group) or 1 (shared). -1: bad shape.
int64_t ParamStride(int64_t elements, const Shape& s) {
  if (elements == s.c) return 0;
  if (elements == s.g * s.c) return s.c;
  return -1;
}

int64_t Chunks(ffi::ThreadPool& pool, const Shape& s) {
  if (s.g * s.m * s.c < kSmall) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), s.m / kBlock));
}

// out1[g,c] = E_m f1(u, x), out2[g,c] = E_m f2(u, x) for the two reduction kernels.
template <bool kSquare>
void MeanPair(ffi::ThreadPool& pool, const float* u, const float* x, const Shape& s,
              float* out1, float* out2) {
  const int64_t chunks = Chunks(pool, s), c = s.c;
  std::vector<double> acc(s.g * chunks * 2 * c, 0.0);
  ParallelFor(pool, s.g * chunks, [&](int64_t task) {
    const int64_t g = task / chunks, k = task % chunks;
    const int64_t lo = s.m * k / chunks, hi = s.m * (k + 1) / chunks;
    double* d1 = &acc[task * 2 * c];
    double* d2 = d1 + c;
    std::vector<float> f(2 * c);
    float* f1 = f.data();
    float* f2 = f1 + c;
    for (int64_t r0 = lo; r0 < hi; r0 += kBlock) {
      std::fill(f.begin(), f.end(), 0.0f);
      const int64_t r1 = std::min(hi, r0 + kBlock);
      for (int64_t r = r0; r < r1; ++r) {
        const float* ur = u + (g * s.m + r) * c;
        if (kSquare) {
          for (int64_t ch = 0; ch < c; ++ch) {
            f1[ch] += ur[ch];
            f2[ch] += ur[ch] * ur[ch];
          }
        } else {
          const float* xr = x + (g * s.m + r) * c;
          for (int64_t ch = 0; ch < c; ++ch) {
            f1[ch] += ur[ch];
            f2[ch] += ur[ch] * xr[ch];
          }
        }
      }
      for (int64_t ch = 0; ch < c; ++ch) {
        d1[ch] += f1[ch];
        d2[ch] += f2[ch];
      }
    }
  });
  const double inv_m = s.m > 0 ? 1.0 / static_cast<double>(s.m) : 0.0;
  for (int64_t g = 0; g < s.g; ++g) {
    for (int64_t ch = 0; ch < c; ++ch) {
      double a = 0.0, b = 0.0;
      for (int64_t k = 0; k < chunks; ++k) {
        a += acc[(g * chunks + k) * 2 * c + ch];
        b += acc[(g * chunks + k) * 2 * c + c + ch];
      }
      out1[g * c + ch] = static_cast<float>(a * inv_m);
      out2[g * c + ch] = static_cast<float>(b * inv_m);
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

// Row-parallel elementwise pass: body(g, row_begin, row_end).
template <typename F>
void ForRows(ffi::ThreadPool& pool, const Shape& s, const F& body) {
  const int64_t chunks = Chunks(pool, s) == 1 ? 1 : 4 * pool.num_threads();
  ParallelFor(pool, s.g * chunks, [&](int64_t task) {
    const int64_t g = task / chunks, k = task % chunks;
    body(g, s.m * k / chunks, s.m * (k + 1) / chunks);
  });
}

ffi::Error AffineImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                      ffi::ResultBuffer<ffi::F32> y, int64_t rank) {
  Shape s;
  if (!GetShape(x.dimensions(), rank, &s) || Count(*y) != Count(x))
    return ffi::Error::InvalidArgument("jnas_bn_affine: bad shapes");
  const int64_t sa = ParamStride(Count(a), s), sb = ParamStride(Count(b), s);
  if (sa < 0 || sb < 0) return ffi::Error::InvalidArgument("jnas_bn_affine: bad parameters");
  const float *xp = x.typed_data(), *ap = a.typed_data(),
              *bp = b.typed_data();
  float* yp = y->typed_data();
  const int64_t c = s.c;
  ForRows(pool, s, [&](int64_t g, int64_t lo, int64_t hi) {
    const float *ag = ap + g * sa, *bg = bp + g * sb;
    for (int64_t r = lo; r < hi; ++r) {
      const float* xr = xp + (g * s.m + r) * c;
      float* yr = yp + (g * s.m + r) * c;
      for (int64_t ch = 0; ch < c; ++ch) yr[ch] = xr[ch] * ag[ch] + bg[ch];
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
  const float *up = u.typed_data(), *vp = v.typed_data();
  const float *pp = p.typed_data(), *qp = q.typed_data(),
              *rp = r.typed_data();
  float* yp = y->typed_data();
  const int64_t c = s.c;
  ForRows(pool, s, [&](int64_t g, int64_t lo, int64_t hi) {
    const float *pg = pp + g * sp, *qg = qp + g * sq, *rg = rp + g * sr;
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t off = (g * s.m + row) * c;
      const float *ur = up + off, *vr = vp + off;
      float* yr = yp + off;
      for (int64_t ch = 0; ch < c; ++ch) yr[ch] = pg[ch] * ur[ch] + qg[ch] * vr[ch] + rg[ch];
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
