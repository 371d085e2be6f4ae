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
// registers: a tile of R input channels times P vectors of output channels, the rows of dy
// read from a zero-padded copy of a block of rows (~32 KB, so the copy stays in cache while
// every tile reads it), x read in place. Rows are split over XLA's intra-op thread pool; per-task partial sums are added in
// double precision.

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
// P loads and a broadcast within the vector registers.
constexpr int kMaxP = kRegs >= 32 ? 6 : 4;
constexpr int TileRows(int p) { return std::min(12, std::max(1, (kRegs - p - 2) / p)); }

// acc[r * ld + v * lanes ...] += sum over the block's rows of x[row, r] * d[row, v-th vector].
// x: the block's first row of x at this tile's first channel (row stride ldx); d: the padded
// copy of the block's dy rows at this panel's first vector (row stride ldd).
template <typename V, int R, int P, bool kRelu>
void Tile(const float* x, int64_t ldx, const float* d, int64_t ldd, int64_t rows, float* acc,
          int64_t ld) {
  constexpr int64_t L = Lanes<V>();
  V a[R][P];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < P; ++v) a[r][v] = V{};
  for (int64_t m = 0; m < rows; ++m) {
    V dv[P];
    for (int v = 0; v < P; ++v) dv[v] = Load<V>(d + m * ldd + v * L);
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
template <typename V, int P, bool kRelu, int R = TileRows(P)>
void TileTail(int tail, const float* x, int64_t ldx, const float* d, int64_t ldd, int64_t rows,
              float* acc, int64_t ld) {
  if constexpr (R > 1) {
    if (tail == R - 1) return Tile<V, R - 1, P, kRelu>(x, ldx, d, ldd, rows, acc, ld);
    return TileTail<V, P, kRelu, R - 1>(tail, x, ldx, d, ldd, rows, acc, ld);
  }
}

template <typename V, int P, bool kRelu>
void Panel(int64_t ci, const float* x, int64_t ldx, const float* d, int64_t ldd, int64_t rows,
           float* acc, int64_t ld) {
  constexpr int R = TileRows(P);
  int64_t i = 0;
  for (; i + R <= ci; i += R) Tile<V, R, P, kRelu>(x + i, ldx, d, ldd, rows, acc + i * ld, ld);
  if (i < ci)
    TileTail<V, P, kRelu>(static_cast<int>(ci - i), x + i, ldx, d, ldd, rows, acc + i * ld, ld);
}

template <typename V, bool kRelu, int P = 1>
void PanelP(int p, int64_t ci, const float* x, int64_t ldx, const float* d, int64_t ldd,
            int64_t rows, float* acc, int64_t ld) {
  if (p == P || P == kMaxP) return Panel<V, P, kRelu>(ci, x, ldx, d, ldd, rows, acc, ld);
  if constexpr (P < kMaxP) PanelP<V, kRelu, P + 1>(p, ci, x, ldx, d, ldd, rows, acc, ld);
}

// The row stride of the padded dy copy (and of the accumulators) for co columns.
template <typename V>
int64_t Padded(int64_t co) {
  return (co + Lanes<V>() - 1) / Lanes<V>() * Lanes<V>();
}

// acc [ci][Padded(co)] += x[m0:m1]^T dy[m0:m1], block of rows by block of rows. x is [m][ldx]
// (its first ci columns are used), dy [m][ldy] (its first co columns); relu on x.
template <typename V, bool kRelu>
void Rows(const float* x, int64_t ldx, const float* dy, int64_t ldy, int64_t ci, int64_t co,
          int64_t m0, int64_t m1, float* acc) {
  constexpr int64_t L = Lanes<V>();
  const int64_t ldd = Padded<V>(co), nv = ldd / L;
  // A block of padded dy rows of ~32 KB (measured: 8-128 KB within noise of each other, x
  // read in place); each tile's accumulators are loaded and stored once per block.
  const int64_t block = std::clamp<int64_t>(32768 / 4 / ldd, 16, 512);
  thread_local std::vector<float> buf;
  if (buf.size() < static_cast<size_t>(block * ldd)) buf.resize(block * ldd);
  float* d = buf.data();
  // Panels of at most kMaxP vectors, as equal as possible.
  const int64_t panels = (nv + kMaxP - 1) / kMaxP;
  for (int64_t m = m0; m < m1; m += block) {
    const int64_t rows = std::min(block, m1 - m);
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(d + r * ldd, dy + (m + r) * ldy, sizeof(float) * co);
      std::fill(d + r * ldd + co, d + (r + 1) * ldd, 0.0f);
    }
    int64_t v0 = 0;
    for (int64_t k = 0; k < panels; ++k) {
      const int64_t v1 = nv * (k + 1) / panels;
      PanelP<V, kRelu>(static_cast<int>(v1 - v0), ci, x + m * ldx, ldx, d + v0 * L, ldd, rows,
                       acc + v0 * L, ldd);
      v0 = v1;
    }
  }
}

// How one product is computed: with vectors of `lanes` floats along the columns of `cols`
// (x or dy: the operand read from the padded copy), the other operand broadcast.
struct Plan {
  int64_t lanes;
  bool swap;  // vectors along x's channels (dw^T is accumulated, transposed at the end)
};

int64_t PadTo(int64_t n, int64_t lanes) { return (n + lanes - 1) / lanes * lanes; }

// The fewest padded multiply-adds, weighted by what the tiles cost beyond them. Measured on the
// 2-core AMD EPYC (Zen 4) of the project machines, one thread, the DARTS network's shapes: a
// 16-float FMA costs two 8-float ones, but 8-float tiles do half the work per load (x1.3), and
// vectors along x's channels (swapped: the wide operand copied, few rows per block) ran at
// 55-75% of the unswapped speed where neither pads (288x72: 53 against 95 GFLOP/s; x1.25). So
// 144x36 takes 16-float vectors along x's 144 channels (66 against 56 GFLOP/s as 5 x 8 along
// the 36) and 288x72 80 padded columns of dy. JNAS_PW_LANES=16 or 8 forces a width.
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
      if (lanes == 8) cost *= 1.3;
      if (swap) cost *= 1.25;
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
