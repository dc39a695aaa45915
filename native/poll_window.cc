#include "poll_window.h"

#include <uv.h>

#include <algorithm>

#include "os.h"

namespace crossport {

namespace {

// How often the run queue is sampled: while the CPUs are free (a busy neighbour that appears
// in between is caught by a yield that comes back late), and while they are taken.
constexpr uint64_t kSampleFreeNs = 4 * 1000 * 1000;
constexpr uint64_t kSampleTakenNs = 16 * 1000 * 1000;
// A yield returns in about a microsecond when nobody else wants the CPU, and in tens of
// microseconds when our peer ran meanwhile; a much longer one lost the CPU to someone else.
constexpr uint64_t kLateYieldNs = 200 * 1000;
// A loop turn takes a microsecond or two. A much longer gap since the last look means the
// process was descheduled: polling then only takes CPU from the peer.
constexpr uint64_t kContendedGapNs = 50 * 1000;

}  // namespace

bool CpuContention::Contended(uint64_t now_ns) {
  if (now_ns >= next_sample_ns_) Sample(now_ns);
  return contended_;
}

void CpuContention::Sample(uint64_t now_ns) {
  int runnable = os::RunnableThreads();
  int cpus = os::UsableCpus();
  // (Unknown on this system: polling stays on, guarded by late yields only.)
  contended_ = runnable > 0 && cpus > 0 && runnable > cpus;
  next_sample_ns_ = now_ns + (contended_ ? kSampleTakenNs : kSampleFreeNs);
}

void CpuContention::NoteYield(uint64_t now_ns, uint64_t took_ns) {
  if (took_ns < kLateYieldNs) return;
  contended_ = true;
  next_sample_ns_ = now_ns + kSampleTakenNs;
}

PollWindow::PollWindow(uint64_t max_ns) : max_ns_(max_ns), window_ns_(max_ns / 4) {}

bool PollWindow::KeepPolling(bool dispatched, CpuContention* cpu) {
  uint64_t now = uv_hrtime();
  if (dispatched) last_record_ns_ = now;
  if (polling_ && now - last_poll_ns_ > kContendedGapNs) window_ns_ /= 2;
  last_poll_ns_ = now;
  if (now - last_record_ns_ < window_ns_ && !cpu->Contended(now)) {
    polling_ = true;
    // Sharing a CPU with the peer, spinning would keep it from answering.
    os::YieldCpu();
    uint64_t after = uv_hrtime();
    cpu->NoteYield(after, after - now);
    return true;
  }
  if (polling_) {
    polling_ = false;
    window_ns_ /= 2;  // a whole window passed without a record (or the CPUs are taken)
  }
  slept_at_ns_ = now;
  return false;
}

void PollWindow::OnWake() {
  if (slept_at_ns_ == 0) return;
  uint64_t gap = uv_hrtime() - slept_at_ns_;
  slept_at_ns_ = 0;
  // Woken soon after we slept: a longer window would have seen it without the wake-up.
  if (gap < max_ns_) window_ns_ = std::min(max_ns_, std::max(2 * window_ns_, 2 * gap));
}

}  // namespace crossport
