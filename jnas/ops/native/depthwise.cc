// Depthwise convolution kernels for XLA's CPU backend, called through the XLA FFI.
//
// Built on first use by jnas/ops/native/__init__.py (g++ -O3 -march=native) and registered
// as custom-call targets; jnas/ops/depthwise.py falls back to its pure-XLA formulation when no
// compiler is available. Why these exist: XLA's CPU code for the per-tap sums of a depthwise
// convolution (and above all for its weight gradient, a column reduction per tap) runs 5-10x
// below the machine's memory bandwidth; these loops read each input once.
//
// Both kernels read x (NHWC, float32) as if zero-padded by (pt, pl) above and left (the
// output's size sets the padding below and right; negative padding crops):
//   jnas_dw_conv:  y[b,o,p,c] = sum_{i,j} x[b, o*s + i*d - pt, p*s + j*d - pl, c] * w[i,j,c]
//   jnas_dw_wgrad: dw[i,j,c]  = sum_{b,o,p} x[b, o*s + i*d - pt, p*s + j*d - pl, c] * dy[b,o,p,c]
// with x = 0 outside its bounds, and x replaced by max(x, 0) where the relu attribute is set
// (the ReLU that precedes every depthwise conv of the DARTS ops); interior dilation (a strided conv's input gradient) is done
// by the caller. Work is split over (batch, output row) and run on XLA's intra-op thread pool.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jnas::ParallelFor;

struct Geometry {
  int64_t b, h, w, c, ho, wo, kh, kw, s, d, pt, pl;
};

// The input as read: max(x, 0) when the conv applies a ReLU to its input.
template <bool kRelu>
inline float In(float v) {
  return kRelu ? std::max(v, 0.0f) : v;
}

// The range [p0, p1) of output columns p whose input column p*s + off lies in [0, w).
inline void ValidCols(const Geometry& g, int64_t off, int64_t* p0, int64_t* p1) {
  *p0 = off >= 0 ? 0 : (-off + g.s - 1) / g.s;
  *p1 = off >= g.w ? 0 : std::min<int64_t>(g.wo, (g.w - 1 - off) / g.s + 1);
}

// Calls f(t, xs, p0, p1) for each tap t = i * kw + j of output row (b, o) that reads inside x:
// output columns [p0, p1) read x from xs = &x[b, o*s + i*d - pt, p0*s + j*d - pl, 0] on.
template <typename F>
inline void ForEachTap(const float* x, const Geometry& g, int64_t b, int64_t o, const F& f) {
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t r = o * g.s + i * g.d - g.pt;
    if (r < 0 || r >= g.h) continue;
    const float* xrow = x + ((b * g.h + r) * g.w) * g.c;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t off = j * g.d - g.pl;
      int64_t p0, p1;
      ValidCols(g, off, &p0, &p1);
      if (p0 < p1) f(i * g.kw + j, xrow + (p0 * g.s + off) * g.c, p0, p1);
    }
  }
}

// y[b,o,:,:] for one (b, o): the row of outputs, accumulated tap by tap in L1.
template <bool kRelu>
void ConvRow(const float* x, const float* w, float* y, const Geometry& g, int64_t b, int64_t o,
             const float* wtile) {
  const int64_t c = g.c, row = g.wo * c;
  float* out = y + ((b * g.ho + o) * g.wo) * c;
  std::memset(out, 0, sizeof(float) * row);
  ForEachTap(x, g, b, o, [&](int64_t t, const float* xs, int64_t p0, int64_t p1) {
    float* op = out + p0 * c;
    if (g.s == 1) {
      // Contiguous over (p, c): one FMA stream against the weights tiled along p.
      const float* wt = wtile + t * row + p0 * c;
      const int64_t n = (p1 - p0) * c;
      for (int64_t q = 0; q < n; ++q) op[q] += In<kRelu>(xs[q]) * wt[q];
    } else {
      const float* wt = w + t * c;
      for (int64_t p = 0; p < p1 - p0; ++p) {
        const float* xp = xs + p * g.s * c;
        float* opp = op + p * c;
        for (int64_t ch = 0; ch < c; ++ch) opp[ch] += In<kRelu>(xp[ch]) * wt[ch];
      }
    }
  });
}

ffi::Error DwConvImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                      ffi::ResultBuffer<ffi::F32> y, int64_t stride, int64_t dilation,
                      int64_t pad_top, int64_t pad_left, int64_t relu) {
  auto xd = x.dimensions(), wd = w.dimensions(), yd = y->dimensions();
  if (xd.size() != 4 || wd.size() != 3 || yd.size() != 4 || wd[2] != xd[3] || yd[3] != xd[3] ||
      yd[0] != xd[0] || stride < 1 || dilation < 1)
    return ffi::Error::InvalidArgument("jnas_dw_conv: bad shapes");
  Geometry g{xd[0], xd[1], xd[2], xd[3], yd[1], yd[2], wd[0], wd[1],
             stride, dilation, pad_top, pad_left};
  const float* xp = x.typed_data();
  const float* wp = w.typed_data();
  float* yp = y->typed_data();
  std::vector<float> wtile;
  if (g.s == 1) {
    const int64_t row = g.wo * g.c;
    wtile.resize(g.kh * g.kw * row);
    for (int64_t t = 0; t < g.kh * g.kw; ++t)
      for (int64_t p = 0; p < g.wo; ++p)
        std::memcpy(&wtile[t * row + p * g.c], wp + t * g.c, sizeof(float) * g.c);
  }
  const float* wt = wtile.data();
  const int64_t rows = g.b * g.ho;
  const int64_t chunks = std::min<int64_t>(rows, 64);
  ParallelFor(pool, chunks, [&](int64_t k) {
    for (int64_t r = rows * k / chunks; r < rows * (k + 1) / chunks; ++r)
      if (relu)
        ConvRow<true>(xp, wp, yp, g, r / g.ho, r % g.ho, wt);
      else
        ConvRow<false>(xp, wp, yp, g, r / g.ho, r % g.ho, wt);
  });
  return ffi::Error::Success();
}

template <bool kRelu>
void WgradRows(const float* xp, const float* dp, float* a, const Geometry& g, int64_t r0,
               int64_t r1) {
  const int64_t c = g.c, acc_len = g.s == 1 ? g.wo * c : c;
  for (int64_t rr = r0; rr < r1; ++rr) {
    const int64_t b = rr / g.ho, o = rr % g.ho;
    const float* drow = dp + ((b * g.ho + o) * g.wo) * c;
    ForEachTap(xp, g, b, o, [&](int64_t t, const float* xs, int64_t p0, int64_t p1) {
      const float* ds = drow + p0 * c;
      float* at = a + t * acc_len;
      if (g.s == 1) {
        float* atp = at + p0 * c;
        const int64_t n = (p1 - p0) * c;
        for (int64_t q = 0; q < n; ++q) atp[q] += In<kRelu>(xs[q]) * ds[q];
      } else {
        for (int64_t p = 0; p < p1 - p0; ++p) {
          const float* xq = xs + p * g.s * c;
          const float* dq = ds + p * c;
          for (int64_t ch = 0; ch < c; ++ch) at[ch] += In<kRelu>(xq[ch]) * dq[ch];
        }
      }
    });
  }
}

ffi::Error DwWgradImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                       ffi::ResultBuffer<ffi::F32> dw, int64_t stride, int64_t dilation,
                       int64_t pad_top, int64_t pad_left, int64_t relu) {
  auto xd = x.dimensions(), dd = dy.dimensions(), wd = dw->dimensions();
  if (xd.size() != 4 || dd.size() != 4 || wd.size() != 3 || dd[3] != xd[3] || wd[2] != xd[3] ||
      dd[0] != xd[0] || stride < 1 || dilation < 1)
    return ffi::Error::InvalidArgument("jnas_dw_wgrad: bad shapes");
  Geometry g{xd[0], xd[1], xd[2], xd[3], dd[1], dd[2], wd[0], wd[1],
             stride, dilation, pad_top, pad_left};
  const float* xp = x.typed_data();
  const float* dp = dy.typed_data();
  const int64_t c = g.c, wo = g.wo, row = wo * c, taps = g.kh * g.kw;
  const int64_t rows = g.b * g.ho;
  const int64_t chunks = std::min<int64_t>(rows, std::max<int64_t>(1, pool.num_threads()));
  // Per chunk, per tap, an accumulator along the whole output row (s == 1) or per channel.
  const int64_t acc_len = g.s == 1 ? row : c;
  std::vector<float> acc(chunks * taps * acc_len, 0.0f);
  ParallelFor(pool, chunks, [&](int64_t k) {
    float* a = &acc[k * taps * acc_len];
    const int64_t r0 = rows * k / chunks, r1 = rows * (k + 1) / chunks;
    if (relu)
      WgradRows<true>(xp, dp, a, g, r0, r1);
    else
      WgradRows<false>(xp, dp, a, g, r0, r1);
  });
  float* out = dw->typed_data();
  for (int64_t t = 0; t < taps; ++t) {
    for (int64_t ch = 0; ch < c; ++ch) {
      double s = 0.0;
      for (int64_t k = 0; k < chunks; ++k) {
        const float* at = &acc[(k * taps + t) * acc_len];
        if (g.s == 1) {
          for (int64_t p = 0; p < wo; ++p) s += at[p * c + ch];
        } else {
          s += at[ch];
        }
      }
      out[t * c + ch] = static_cast<float>(s);
    }
  }
  return ffi::Error::Success();
}

}  // namespace

// Both kernels: (x, second operand) -> result; stride, dilation, top/left padding and relu.
static auto Binding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>()
      .Attr<int64_t>("stride")
      .Attr<int64_t>("dilation")
      .Attr<int64_t>("pad_top")
      .Attr<int64_t>("pad_left")
      .Attr<int64_t>("relu");
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(JnasDwConv, DwConvImpl, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JnasDwWgrad, DwWgradImpl, Binding());
