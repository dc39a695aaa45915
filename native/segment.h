// The shared-memory segment of one channel: a header and two rings, one per direction.
// Side 0 writes ring 0 and reads ring 1; side 1 the reverse.
#pragma once

#include <cstdint>

#include "os.h"
#include "ring.h"

namespace crossport {

struct SegmentHeader {
  uint32_t magic;
  uint32_t version;
  uint64_t ring_capacity;  // informative only: each side derives its own from the fd's size
  uint8_t reserved[48];
};
static_assert(sizeof(SegmentHeader) == 64, "segment header layout");

constexpr uint32_t kSegmentMagic = 0x43525350;  // "CRSP"
constexpr uint32_t kSegmentVersion = 1;
constexpr uint64_t kRingsOffset = sizeof(SegmentHeader);
constexpr uint64_t kDataOffset = kRingsOffset + 2 * sizeof(RingControl);

class Segment {
 public:
  // Creates a new segment with two rings of `ring_capacity` bytes each.
  static Segment* Create(uint64_t ring_capacity, os::SystemError* err);
  // Maps a segment received from elsewhere. Takes ownership of `fd` on success only.
  // Returns nullptr if the fd is not a segment of a size this build accepts.
  static Segment* Adopt(int fd, os::SystemError* err);
  ~Segment();

  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  int fd() const { return fd_; }
  // Gives up the fd (it is moving elsewhere); the mapping stays until destruction.
  int ReleaseFd() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  uint64_t ring_capacity() const { return ring_capacity_; }
  // The ring `side` writes into, and the one it reads from.
  Ring SendRing(int side) { return MakeRing(side, true); }
  Ring ReceiveRing(int side) { return MakeRing(1 - side, false); }

 private:
  Segment(int fd, uint8_t* base, uint64_t size, uint64_t ring_capacity)
      : fd_(fd), base_(base), size_(size), ring_capacity_(ring_capacity) {}
  Ring MakeRing(int index, bool producer);

  int fd_;
  uint8_t* base_;
  uint64_t size_;
  uint64_t ring_capacity_;
};

}  // namespace crossport
