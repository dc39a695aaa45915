// The poll window: after the last record of a batch, a started port keeps looking at its ring on
// each turn of the event loop (never blocking it) for a short while before it sleeps. Waking a
// sleeping process costs ~25 us each way between idle CPUs; a peer that answers within the
// window is seen without it.
//
// Polling only pays while this process and its peer each have a CPU. When more threads are
// runnable than there are CPUs, a polling side takes CPU time from its peer or from whoever else
// waits, and the scheduler treats it as the busy process it then is: a yield hands the CPU to a
// busy neighbour for a whole time slice (milliseconds), and a side that never sleeps is
// preempted for one. So the window is closed while the CPUs are contended (CpuContention), and
// the port sleeps at once, as worker_threads does.
#pragma once

#include <cstdint>

namespace crossport {

// Whether the CPUs this process may run on are all taken: more threads runnable than CPUs, or
// a yield of ours that came back late (someone else ran on our CPU meanwhile). Sampled at most
// every few milliseconds; shared by every port of an environment.
class CpuContention {
 public:
  bool Contended(uint64_t now_ns);
  // A yield took `took_ns`: long enough, it means we lost our CPU to someone else.
  void NoteYield(uint64_t now_ns, uint64_t took_ns);

 private:
  void Sample(uint64_t now_ns);
  bool contended_ = false;
  uint64_t next_sample_ns_ = 0;
};

class PollWindow {
 public:
  // `max_ns`: the longest window (0: never poll).
  explicit PollWindow(uint64_t max_ns);
  // A batch ended with the ring empty (`dispatched`: it delivered something). True: look again
  // on the next turn of the loop (the CPU was yielded first); false: go to sleep.
  bool KeepPolling(bool dispatched, CpuContention* cpu);
  // The socket woke us: adapt the window to how soon after sleeping that was.
  void OnWake();

 private:
  uint64_t max_ns_;
  uint64_t window_ns_;
  bool polling_ = false;
  uint64_t last_record_ns_ = 0;
  uint64_t last_poll_ns_ = 0;
  uint64_t slept_at_ns_ = 0;
};

}  // namespace crossport
