#include "executor.hpp"

#include <chrono>

namespace jr {

void Executor::run_batch(const std::vector<BatchJob>& jobs, BatchSink& sink) {
  using namespace std::chrono;
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (i > 0 && !sink.may_send(i)) {
      ExecOutcome out;
      out.release = true;
      sink.finished(i, std::move(out));
      continue;
    }
    int64_t now = duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
    sink.started(i, now);
    const BatchJob& b = jobs[i];
    sink.finished(i, run(*b.job, *b.ctx, b.timeout_ms > 0 ? now + b.timeout_ms : 0));
  }
}

}  // namespace jr
