// Threads that take work off the event loop's thread: copying a large transferred buffer on
// every CPU at once, and freeing what a transfer left behind (releasing hundreds of MiB takes
// tens of milliseconds) after postMessage has returned. Started at first use; per environment.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace crossport {

class Background {
 public:
  Background() = default;
  // Runs what is still queued, then joins the threads.
  ~Background();
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  // Runs body(0) ... body(count - 1) on this thread and on the idle background threads, and
  // returns once all have run. (This thread takes whatever the others have not started, so a
  // busy machine costs no more than running them all here.)
  void ParallelFor(size_t count, const std::function<void(size_t)>& body);
  // Runs `task` on a background thread, soon. `bytes`: what it frees. When more than a bound
  // waits to be freed already, it runs here and now instead (memory must not pile up).
  void Later(std::function<void()> task, uint64_t bytes);

 private:
  struct Batch;
  void Start();
  void Work();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> threads_;
  std::deque<std::shared_ptr<Batch>> batches_;
  std::deque<std::pair<std::function<void()>, uint64_t>> tasks_;
  uint64_t pending_bytes_ = 0;
  bool stopping_ = false;
};

}  // namespace crossport
