// The weight gradient of a pointwise (1x1) convolution for XLA's CPU backend, via the XLA FFI.
//
// Built with the other kernels by jnas/ops/native/__init__.py. For channels-last x [..., ci]
// and dy [..., co] with the same leading dimensions (m rows in all):
//   jnas_pw_wgrad: dw[i, o] = sum_m x[m, i] * dy[m, o]
// (max(x, 0) in place of x where the relu attribute is set). Axes before the instance's `rank`
// trailing axes (added by vmap) are independent groups: dw gets them as leading axes.
// Why it exists: XLA's CPU backend runs this product (both operands contracted over their
// leading, long axis) by first transposing dy into a [co, m] copy and then calling Eigen: on
// the DARTS evaluation network (20 cells, batch 32) that copy and the dot took ~0.5 s of the
// step's ~2.8 s of CPU time. Here each thread accumulates its rows' outer products in
// registers: a tile of R input channels times P vectors of output channels over a block of
// rows (~32 KB of dy, which stays in cache while every tile reads it); both operands read in
// place but for each row's last, partial vector of dy, copied zero-padded. Rows are split
// over XLA's intra-op thread pool; per-task partial sums are added in double precision.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jnas::ParallelFor;

// Vectors of 8 floats (AVX2) and, where the compiler targets AVX-512, of 16.
typedef float Vec8 __attribute__((vector_size(8 * sizeof(float))));
#if defined(__AVX512F__)
typedef float Vec16 __attribute__((vector_size(16 * sizeof(float))));
constexpr int kRegs = 32;  // vector registers
#else
constexpr int kRegs = 16;
#endif

template <typename V>
constexpr int64_t Lanes() {
  return sizeof(V) / sizeof(float);
}

template <typename V>
inline V Load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V>
inline void Store(float* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

template <bool kRelu>
inline float In(float v) {
  return kRelu ? std::max(v, 0.0f) : v;
}

// Register tile: R rows (input channels) x P vectors (output channels): R * P accumulators,
// P loads and a broadcast within the vector registers. At most 5 vectors: a 4 x 6 tile (31 of
// the 32 registers live) ran at 55-60 GFLOP/s per thread where 5 x 5 and 6 x 4 tiles ran at
// 100-105 (288x144 and 576x144, on the project machines' Zen 4).
constexpr int kMaxP = kRegs >= 32 ? 5 : 4;
constexpr int TileRows(int p) { return std::min(12, std::max(1, (kRegs - p - 2) / p)); }

// The block's rows of the vector operand: P vectors per row read in place from d (row stride
// ldd); with kTail, the last one from t instead (row stride one vector: the row's last,
// partial vector, copied and zero-padded).
struct Src {
  const float* d;
  int64_t ldd;
  const float* t;
};

// acc[r * ld + v * lanes ...] += sum over the block's rows of x[row, r] * src[row, v-th vector].
// x: the block's first row of x at this tile's first channel (row stride ldx); src: the
// block's rows of dy from this panel's first vector.
template <typename V, int R, int P, bool kRelu, bool kTail>
void Tile(const float* x, int64_t ldx, const Src& src, int64_t rows, float* acc, int64_t ld) {
  constexpr int64_t L = Lanes<V>();
  V a[R][P];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < P; ++v) a[r][v] = V{};
  const float* d = src.d;
  const float* t = src.t;
  const int64_t ldd = src.ldd;
  for (int64_t m = 0; m < rows; ++m) {
    V dv[P];
    for (int v = 0; v < P; ++v)
      dv[v] = (kTail && v == P - 1) ? Load<V>(t + m * L) : Load<V>(d + m * ldd + v * L);
    const float* xm = x + m * ldx;
    for (int r = 0; r < R; ++r) {
      // A scalar times a vector: a broadcast (V{} + s would add +0.0f first, which the
      // compiler must keep: it turns -0.0f into +0.0f).
      const float xs = In<kRelu>(xm[r]);
      for (int v = 0; v < P; ++v) a[r][v] += xs * dv[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < P; ++v) {
      float* q = acc + r * ld + v * L;
      Store<V>(q, Load<V>(q) + a[r][v]);
    }
}

// The remaining rows (< TileRows(P)) of a panel in one tile.
template <typename V, int P, bool kRelu, bool kTail, int R = TileRows(P)>
void TileTail(int tail, const float* x, int64_t ldx, const Src& src, int64_t rows, float* acc,
              int64_t ld) {
  if constexpr (R > 1) {
    if (tail == R - 1) return Tile<V, R - 1, P, kRelu, kTail>(x, ldx, src, rows, acc, ld);
    return TileTail<V, P, kRelu, kTail, R - 1>(tail, x, ldx, src, rows, acc, ld);
  }
}

template <typename V, int P, bool kRelu, bool kTail>
void Panel(int64_t ci, const float* x, int64_t ldx, const Src& src, int64_t rows, float* acc,
           int64_t ld) {
  constexpr int R = TileRows(P);
  int64_t i = 0;
  for (; i + R <= ci; i += R)
    Tile<V, R, P, kRelu, kTail>(x + i, ldx, src, rows, acc + i * ld, ld);
  if (i < ci)
    TileTail<V, P, kRelu, kTail>(static_cast<int>(ci - i), x + i, ldx, src, rows, acc + i * ld,
                                 ld);
}

template <typename V, bool kRelu, bool kTail, int P = 1>
void PanelP(int p, int64_t ci, const float* x, int64_t ldx, const Src& src, int64_t rows,
            float* acc, int64_t ld) {
  if (p == P || P == kMaxP) return Panel<V, P, kRelu, kTail>(ci, x, ldx, src, rows, acc, ld);
  if constexpr (P < kMaxP) PanelP<V, kRelu, kTail, P + 1>(p, ci, x, ldx, src, rows, acc, ld);
}

// n rounded up to whole vectors of `lanes` floats (the accumulators' row stride).
int64_t PadTo(int64_t n, int64_t lanes) { return (n + lanes - 1) / lanes * lanes; }

// acc [ci][PadTo(co, L)] += x[m0:m1]^T dy[m0:m1], block of rows by block of rows. x is [m][ldx]
// (its first ci columns are used), dy [m][ldy] (its first co columns); relu on x. dy is read
// in place but for each row's last, partial vector, which is copied into a zero-padded
// buffer (a copy of the whole block, padded, cost 2.6 % of the DARTS step's CPU time).
template <typename V, bool kRelu>
void Rows(const float* x, int64_t ldx, const float* dy, int64_t ldy, int64_t ci, int64_t co,
          int64_t m0, int64_t m1, float* acc) {
  constexpr int64_t L = Lanes<V>();
  const int64_t ld = PadTo(co, L), nv = ld / L, full = co / L, rem = co - full * L;
  // Blocks of ~32 KB of dy rows (measured: 8-128 KB within noise of each other); each tile's
  // accumulators are loaded and stored once per block.
  const int64_t block = std::clamp<int64_t>(32768 / 4 / ld, 16, 512);
  thread_local std::vector<float> buf;
  if (rem) {
    buf.assign(block * L, 0.0f);  // lanes past rem stay zero
  }
  float* t = buf.data();
  // Panels of at most kMaxP vectors, as equal as possible.
  const int64_t panels = (nv + kMaxP - 1) / kMaxP;
  for (int64_t m = m0; m < m1; m += block) {
    const int64_t rows = std::min(block, m1 - m);
    if (rem)
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(t + r * L, dy + (m + r) * ldy + full * L, sizeof(float) * rem);
    int64_t v0 = 0;
    for (int64_t k = 0; k < panels; ++k) {
      const int64_t v1 = nv * (k + 1) / panels;
      const Src src{dy + m * ldy + v0 * L, ldy, t};
      const float* xb = x + m * ldx;
      if (rem && k + 1 == panels)
        PanelP<V, kRelu, true>(static_cast<int>(v1 - v0), ci, xb, ldx, src, rows, acc + v0 * L,
                               ld);
      else
        PanelP<V, kRelu, false>(static_cast<int>(v1 - v0), ci, xb, ldx, src, rows,
                                acc + v0 * L, ld);
      v0 = v1;
    }
  }
}

// How one product is computed: with vectors of `lanes` floats along the columns of `cols`
// (x or dy: the vector operand), the other operand broadcast.
struct Plan {
  int64_t lanes;
  bool swap;  // vectors along x's channels (dw^T is accumulated, transposed at the end)
};

// The fewest padded multiply-adds, weighted by what the tiles cost beyond them. Measured on the
// 2-core AMD EPYC (Zen 4) of the project machines, one thread, the DARTS network's shapes:
// 8-float vectors ran 0-12 % faster than 16-float ones at the same padding (a 16-float FMA
// costs two 8-float ones there; x1.1 for 16), and vectors along x's channels (swapped) up to
// 10 % slower where neither pads (x1.05). So 36x36 takes 5 x 8 floats along dy's channels
// (85 GFLOP/s, against 76 as 3 x 16) and 144x36 is swapped (100 against 91). Where a 16-float
// FMA is as cheap as an 8-float one (other AVX-512 machines), JNAS_PW_LANES=16 forces it.
Plan Choose(int64_t ci, int64_t co) {
  static const int64_t forced = [] {
    const char* force = std::getenv("JNAS_PW_LANES");
    return force ? std::atoi(force) : 0;
  }();
  Plan best{8, false};
  double best_cost = -1;
  for (int64_t lanes : {16, 8}) {
#if !defined(__AVX512F__)
    if (lanes == 16) continue;
#endif
    if (forced && lanes != forced) continue;
    for (bool swap : {false, true}) {
      double cost = static_cast<double>(swap ? PadTo(ci, lanes) * co : ci * PadTo(co, lanes));
      if (lanes == 16) cost *= 1.1;
      if (swap) cost *= 1.05;
      if (best_cost < 0 || cost < best_cost) best = {lanes, swap}, best_cost = cost;
    }
  }
  return best;
}

template <typename V, bool kRelu>
void RowsFor(const Plan& plan, const float* x, const float* dy, int64_t ci, int64_t co,
             int64_t m0, int64_t m1, float* acc) {
  if (plan.swap)
    Rows<V, kRelu>(dy, co, x, ci, co, ci, m0, m1, acc);  // relu applies to x: see caller
  else
    Rows<V, kRelu>(x, ci, dy, co, ci, co, m0, m1, acc);
}

ffi::Error PwWgradImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer dy,
                       ffi::Result<ffi::AnyBuffer> dw, int64_t rank, int64_t relu) {
  auto xd = x.dimensions(), dd = dy.dimensions(), wd = dw->dimensions();
  if (x.element_type() != ffi::F32 || dy.element_type() != ffi::F32 ||
      dw->element_type() != ffi::F32)
    return ffi::Error::InvalidArgument("jnas_pw_wgrad: float32 only");
  const int64_t nd = static_cast<int64_t>(xd.size()), lead = nd - rank;
  if (rank < 1 || lead < 0 || dd.size() != xd.size() || static_cast<int64_t>(wd.size()) != lead + 2)
    return ffi::Error::InvalidArgument("jnas_pw_wgrad: bad ranks");
  // Axes before the instance's `rank` trailing axes (added by vmap) are independent groups.
  int64_t groups = 1, m = 1;
  for (int64_t k = 0; k + 1 < nd; ++k) {
    if (xd[k] != dd[k]) return ffi::Error::InvalidArgument("jnas_pw_wgrad: leading dims differ");
    if (k < lead) {
      if (wd[k] != xd[k]) return ffi::Error::InvalidArgument("jnas_pw_wgrad: bad result shape");
      groups *= xd[k];
    } else {
      m *= xd[k];
    }
  }
  const int64_t ci = xd[nd - 1], co = dd[nd - 1];
  if (wd[lead] != ci || wd[lead + 1] != co)
    return ffi::Error::InvalidArgument("jnas_pw_wgrad: bad result shape");
  Plan plan = Choose(ci, co);
  // The ReLU is applied to the broadcast operand only: with relu set, x stays broadcast.
  if (relu) plan.swap = false;
  // Accumulators: [rows][cols padded], rows/cols = ci/co (or co/ci when swapped).
  const int64_t arows = plan.swap ? co : ci, acols = plan.swap ? ci : co;
  const int64_t ld = PadTo(acols, plan.lanes), per_task = arows * ld;
  // A few tasks per thread (XLA may run other work on the pool meanwhile), >= 64 rows each.
  const int64_t tasks =
      std::max<int64_t>(1, std::min<int64_t>(4 * std::max<int64_t>(1, pool.num_threads()), m / 64));
  std::vector<float> acc(groups * tasks * per_task, 0.0f);
  const float* x0 = static_cast<const float*>(x.untyped_data());
  const float* d0 = static_cast<const float*>(dy.untyped_data());
  ParallelFor(pool, groups * tasks, [&](int64_t gk) {
    const int64_t grp = gk / tasks, k = gk % tasks;
    const int64_t m0 = m * k / tasks, m1 = m * (k + 1) / tasks;
    const float* xp = x0 + grp * m * ci;
    const float* dp = d0 + grp * m * co;
    float* a = &acc[gk * per_task];
#if defined(__AVX512F__)
    if (plan.lanes == 16) {
      if (relu)
        RowsFor<Vec16, true>(plan, xp, dp, ci, co, m0, m1, a);
      else
        RowsFor<Vec16, false>(plan, xp, dp, ci, co, m0, m1, a);
      return;
    }
#endif
    if (relu)
      RowsFor<Vec8, true>(plan, xp, dp, ci, co, m0, m1, a);
    else
      RowsFor<Vec8, false>(plan, xp, dp, ci, co, m0, m1, a);
  });
  float* out = static_cast<float*>(dw->untyped_data());
  for (int64_t grp = 0; grp < groups; ++grp)
    for (int64_t i = 0; i < ci; ++i)
      for (int64_t o = 0; o < co; ++o) {
        const int64_t q = plan.swap ? o * ld + i : i * ld + o;
        double s = 0.0;
        for (int64_t k = 0; k < tasks; ++k) s += acc[(grp * tasks + k) * per_task + q];
        out[(grp * ci + i) * co + o] = static_cast<float>(s);
      }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JnasPwWgrad, PwWgradImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("rank")
                                  .Attr<int64_t>("relu"));
