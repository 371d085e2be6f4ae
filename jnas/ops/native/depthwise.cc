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
// Stride 1 (most calls: every normal-cell op, every input gradient) runs the register-blocked
// loops below; other strides, and channel counts whose period lcm(c, lanes) is over 16
// vectors, the plain loops.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <type_traits>
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

// --- Register-blocked kernels for stride 1 (the forward of every normal-cell op, and every
// input gradient) ---
//
// Each task (an image, or a run of its output rows) first copies the input rows it reads into a
// zero-padded scratch (ReLU applied there, once), so every tap reads a full, in-bounds row. A
// row of the output is then a flat run of wo * c floats, cut into blocks of BV vectors whose
// length is a multiple of lcm(c, lanes): every block starts at channel 0, so a block's weights
// (conv) or accumulators (weight gradient) are the same for every block, and the BV
// accumulators live in registers across all taps (conv) or all blocks of a row (weight
// gradient). Two loads per FMA and no stores in the inner loops (the plain loops below: three
// loads and a store).

#if defined(__AVX512F__)
constexpr int64_t kLanes = 16;
#else
constexpr int64_t kLanes = 8;
#endif
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec Load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(Vec));
  return v;
}

inline void Store(float* p, const Vec& v) { std::memcpy(p, &v, sizeof(Vec)); }

// Vectors per block for c channels (>= 8 independent FMA chains); 0 where one period
// lcm(c, lanes) is over 16 vectors (the plain loops run). (Choosing, per row length, the
// multiple that leaves the shortest tail, e.g. 2 blocks of 14 vectors for 28, made the
// weight gradient 1.3-1.5x slower at 28x28x16.)
int64_t BlockVecs(int64_t c) {
  const int64_t period = std::lcm<int64_t>(c, kLanes) / kLanes;
  if (period > 16) return 0;
  return period * ((8 + period - 1) / period);
}

template <typename F>
void WithBlockVecs(int64_t bv, const F& f) {
  switch (bv) {
#define JNAS_BV(n)                         \
  case n:                                  \
    f(std::integral_constant<int, n>{}); \
    break;
    JNAS_BV(8) JNAS_BV(9) JNAS_BV(10) JNAS_BV(11) JNAS_BV(12)
    JNAS_BV(13) JNAS_BV(14) JNAS_BV(15) JNAS_BV(16)
#undef JNAS_BV
  }
}

// A task: output rows [o0, o1) of image b; its scratch holds input rows [o0 - pt, o1 - pt +
// (kh - 1) d) and columns [-pl, wo + (kw - 1) d - pl).
struct Task {
  int64_t b, o0, o1;
};

std::vector<Task> Tasks(const Geometry& g, int64_t threads) {
  const int64_t want = 4 * std::max<int64_t>(1, threads);
  const int64_t split = std::min<int64_t>(g.ho, (want + g.b - 1) / g.b);
  std::vector<Task> tasks;
  for (int64_t b = 0; b < g.b; ++b)
    for (int64_t k = 0; k < split; ++k) tasks.push_back({b, g.ho * k / split, g.ho * (k + 1) / split});
  return tasks;
}

inline int64_t ScratchWidth(const Geometry& g) { return g.wo + (g.kw - 1) * g.d; }

template <bool kRelu>
void FillScratch(const float* x, const Geometry& g, const Task& t, float* buf) {
  const int64_t c = g.c, wp = ScratchWidth(g);
  const int64_t rows = t.o1 - t.o0 + (g.kh - 1) * g.d;
  const int64_t c0 = std::min(wp, std::max<int64_t>(0, g.pl));
  const int64_t c1 = std::max(c0, std::min(wp, g.pl + g.w));
  for (int64_t rs = 0; rs < rows; ++rs) {
    float* dst = buf + rs * wp * c;
    const int64_t r = t.o0 - g.pt + rs;
    if (r < 0 || r >= g.h || c1 == c0) {
      std::fill(dst, dst + wp * c, 0.0f);
      continue;
    }
    std::fill(dst, dst + c0 * c, 0.0f);
    const float* src = x + ((t.b * g.h + r) * g.w + (c0 - g.pl)) * c;
    float* d = dst + c0 * c;
    const int64_t n = (c1 - c0) * c;
    for (int64_t q = 0; q < n; ++q) d[q] = In<kRelu>(src[q]);
    std::fill(dst + c1 * c, dst + wp * c, 0.0f);
  }
}

float* Scratch(const Geometry& g, const Task& t, bool relu, const float* x) {
  thread_local std::vector<float> buf;
  const size_t need = (t.o1 - t.o0 + (g.kh - 1) * g.d) * ScratchWidth(g) * g.c;
  if (buf.size() < need) buf.resize(need);
  if (relu)
    FillScratch<true>(x, g, t, buf.data());
  else
    FillScratch<false>(x, g, t, buf.data());
  return buf.data();
}

// y rows of task t. wtile: per tap, the tap's weights repeated along a block.
template <int BV>
void ConvBlocked(const float* buf, const float* wtile, const Geometry& g, const Task& t,
                 float* y) {
  constexpr int64_t B = BV * kLanes;
  const int64_t c = g.c, n = g.wo * c, row = ScratchWidth(g) * c, tap_row = g.d * row,
                tap_col = g.d * c;
  for (int64_t o = t.o0; o < t.o1; ++o) {
    float* out = y + ((t.b * g.ho + o) * g.wo) * c;
    const float* x0 = buf + (o - t.o0) * row;
    int64_t q0 = 0;
    for (; q0 + B <= n; q0 += B) {
      Vec acc[BV];
#pragma GCC unroll 16
      for (int v = 0; v < BV; ++v) acc[v] = Vec{};
      const float* wt = wtile;
      for (int64_t i = 0; i < g.kh; ++i) {
        const float* xi = x0 + i * tap_row + q0;
        for (int64_t j = 0; j < g.kw; ++j, wt += B) {
          const float* xs = xi + j * tap_col;
#pragma GCC unroll 16
          for (int v = 0; v < BV; ++v) acc[v] += Load(xs + v * kLanes) * Load(wt + v * kLanes);
        }
      }
#pragma GCC unroll 16
      for (int v = 0; v < BV; ++v) Store(out + q0 + v * kLanes, acc[v]);
    }
    // The row's tail (shorter than a block; it starts at channel 0 like a block, so the block's
    // weights apply): one vector at a time, then single floats.
    for (; q0 + kLanes <= n; q0 += kLanes) {
      Vec acc = Vec{};
      const int64_t k = q0 % B;
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
          acc += Load(x0 + i * tap_row + j * tap_col + q0) * Load(wtile + (i * g.kw + j) * B + k);
      Store(out + q0, acc);
    }
    for (int64_t q = q0; q < n; ++q) {
      float s = 0.0f;
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
          s += x0[i * tap_row + j * tap_col + q] * wtile[(i * g.kw + j) * B + q % B];
      out[q] = s;
    }
  }
}

// Adds task t's products into acc (per tap, one block of accumulators; position k of a block
// holds channel k % c).
template <int BV>
void WgradBlocked(const float* buf, const float* dy, const Geometry& g, const Task& t,
                  float* acc) {
  constexpr int64_t B = BV * kLanes;
  const int64_t c = g.c, n = g.wo * c, full = n / B * B, row = ScratchWidth(g) * c,
                tap_row = g.d * row, tap_col = g.d * c;
  for (int64_t o = t.o0; o < t.o1; ++o) {
    const float* drow = dy + ((t.b * g.ho + o) * g.wo) * c;
    const float* x0 = buf + (o - t.o0) * row;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t tap = i * g.kw + j;
        const float* xs = x0 + i * tap_row + j * tap_col;
        float* at = acc + tap * B;
        Vec a[BV];
#pragma GCC unroll 16
        for (int v = 0; v < BV; ++v) a[v] = Load(at + v * kLanes);
        for (int64_t q0 = 0; q0 < full; q0 += B) {
#pragma GCC unroll 16
          for (int v = 0; v < BV; ++v)
            a[v] += Load(xs + q0 + v * kLanes) * Load(drow + q0 + v * kLanes);
        }
#pragma GCC unroll 16
        for (int v = 0; v < BV; ++v) Store(at + v * kLanes, a[v]);
        // The tail starts at channel 0 like a block: into the block's accumulators.
        int64_t q = full;
        for (; q + kLanes <= n; q += kLanes)
          Store(at + (q - full), Load(at + (q - full)) + Load(xs + q) * Load(drow + q));
        for (; q < n; ++q) at[q - full] += xs[q] * drow[q];
      }
    }
  }
}

bool Blocked(const Geometry& g) {
  const int64_t bv = BlockVecs(g.c);
  return g.s == 1 && bv > 0 && g.wo * g.c >= bv * kLanes;
}

void DwConvBlocked(ffi::ThreadPool& pool, const float* x, const float* w, float* y,
                   const Geometry& g, bool relu) {
  const int64_t bv = BlockVecs(g.c), B = bv * kLanes, taps = g.kh * g.kw;
  std::vector<float> wtile(taps * B);
  for (int64_t tap = 0; tap < taps; ++tap)
    for (int64_t k = 0; k < B; ++k) wtile[tap * B + k] = w[tap * g.c + k % g.c];
  const std::vector<Task> tasks = Tasks(g, pool.num_threads());
  ParallelFor(pool, tasks.size(), [&](int64_t k) {
    const float* buf = Scratch(g, tasks[k], relu, x);
    WithBlockVecs(bv, [&](auto n) {
      ConvBlocked<decltype(n)::value>(buf, wtile.data(), g, tasks[k], y);
    });
  });
}

void DwWgradBlocked(ffi::ThreadPool& pool, const float* x, const float* dy, float* dw,
                    const Geometry& g, bool relu) {
  const int64_t bv = BlockVecs(g.c), B = bv * kLanes, taps = g.kh * g.kw, c = g.c;
  const std::vector<Task> tasks = Tasks(g, pool.num_threads());
  const int64_t per_task = taps * B;
  std::vector<float> acc(tasks.size() * per_task, 0.0f);
  ParallelFor(pool, tasks.size(), [&](int64_t k) {
    const float* buf = Scratch(g, tasks[k], relu, x);
    float* a = &acc[k * per_task];
    WithBlockVecs(bv, [&](auto n) {
      WgradBlocked<decltype(n)::value>(buf, dy, g, tasks[k], a);
    });
  });
  std::vector<double> sum(taps * c, 0.0);
  for (size_t k = 0; k < tasks.size(); ++k) {
    const float* a = &acc[k * per_task];
    for (int64_t tap = 0; tap < taps; ++tap)
      for (int64_t q = 0; q < B; ++q) sum[tap * c + q % c] += a[tap * B + q];
  }
  for (int64_t q = 0; q < taps * c; ++q) dw[q] = static_cast<float>(sum[q]);
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
  if (Blocked(g)) {
    DwConvBlocked(pool, xp, wp, yp, g, relu != 0);
    return ffi::Error::Success();
  }
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
  if (Blocked(g)) {
    DwWgradBlocked(pool, xp, dp, dw->typed_data(), g, relu != 0);
    return ffi::Error::Success();
  }
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
