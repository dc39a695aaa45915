#include "background.h"

#include <algorithm>
#include <atomic>
#include <system_error>

#include "os.h"

namespace crossport {

namespace {

// At most this many threads (the copies are bound by memory bandwidth long before).
constexpr int kMaxThreads = 3;
// The most memory that may wait for a background thread to free it.
constexpr uint64_t kMaxPendingBytes = uint64_t{2} << 30;

}  // namespace

// One ParallelFor: its indexes are claimed one by one, by whichever thread comes first.
struct Background::Batch {
  const std::function<void(size_t)>* body;
  size_t count;
  std::atomic<size_t> next{0};
  size_t finished = 0;  // under the mutex
  std::condition_variable done;

  // Runs indexes until none is left; returns how many it ran.
  size_t RunSome() {
    size_t ran = 0;
    for (size_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) {
      (*body)(i);
      ran++;
    }
    return ran;
  }
};

Background::~Background() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

void Background::Start() {
  // (Called with the mutex held.)
  if (!threads_.empty()) return;
  int cpus = os::UsableCpus();
  int count = std::clamp(cpus - 1, 1, kMaxThreads);
  try {
    for (int i = 0; i < count; i++) threads_.emplace_back([this] { Work(); });
  } catch (const std::system_error&) {
    // No thread (or fewer): the caller's thread does the work.
  }
}

void Background::ParallelFor(size_t count, const std::function<void(size_t)>& body) {
  if (count <= 1) {
    if (count == 1) body(0);
    return;
  }
  auto batch = std::make_shared<Batch>();
  batch->body = &body;
  batch->count = count;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Start();
    batches_.push_back(batch);
  }
  wake_.notify_all();
  size_t ran = batch->RunSome();
  std::unique_lock<std::mutex> lock(mutex_);
  // Nothing left to claim: no thread picks this batch up any more.
  auto queued = std::find(batches_.begin(), batches_.end(), batch);
  if (queued != batches_.end()) batches_.erase(queued);
  batch->finished += ran;
  batch->done.wait(lock, [&] { return batch->finished == count; });
}

void Background::Later(std::function<void()> task, uint64_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stopping_) Start();
    if (pending_bytes_ + bytes <= kMaxPendingBytes && !stopping_ && !threads_.empty()) {
      pending_bytes_ += bytes;
      tasks_.emplace_back(std::move(task), bytes);
      wake_.notify_one();
      return;
    }
  }
  task();
}

void Background::Work() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !batches_.empty() || !tasks_.empty(); });
    if (!batches_.empty()) {
      std::shared_ptr<Batch> batch = batches_.front();
      lock.unlock();
      size_t ran = batch->RunSome();
      lock.lock();
      batch->finished += ran;
      if (batch->finished == batch->count) batch->done.notify_all();
      // Every index is claimed: let the next batch (or task) have this thread.
      auto queued = std::find(batches_.begin(), batches_.end(), batch);
      if (queued != batches_.end()) batches_.erase(queued);
      continue;
    }
    if (!tasks_.empty()) {
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task.first();
      lock.lock();
      pending_bytes_ -= task.second;
      continue;
    }
    if (stopping_) return;
  }
}

}  // namespace crossport
