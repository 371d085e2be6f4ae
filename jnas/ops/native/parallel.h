// Shared by the native kernels: a parallel loop over XLA's intra-op thread pool.
#ifndef JNAS_OPS_NATIVE_PARALLEL_H_
#define JNAS_OPS_NATIVE_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace jnas {

// Runs body(chunk) for chunk in [0, n): the caller and up to num_threads - 1 pool tasks claim
// chunks from a shared counter. The caller only waits for chunks that a running task has
// already claimed, so it never waits on a task that is queued behind it (no deadlock when the
// caller is itself a pool thread).
template <typename F>
inline void ParallelFor(xla::ffi::ThreadPool& pool, int64_t n, const F& body) {
  int64_t workers = std::min<int64_t>(pool.num_threads(), n);
  if (workers <= 1) {
    for (int64_t k = 0; k < n; ++k) body(k);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  // `body` lives on the caller's stack: tasks may only touch it for chunks they claim, and the
  // caller returns only after every claimed chunk is done.
  const F* fn = &body;
  auto run = [state, fn, n]() {
    int64_t k;
    while ((k = state->next.fetch_add(1)) < n) {
      (*fn)(k);
      if (state->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->cv.notify_all();
      }
    }
  };
  for (int64_t t = 1; t < workers; ++t) pool.Schedule([run]() { run(); });
  run();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == n; });
}

}  // namespace jnas

#endif  // JNAS_OPS_NATIVE_PARALLEL_H_
