// The shared-memory segment of one channel: a header and four rings. Per direction, a small
// ring carries every record in order, and a large ring the payloads of large messages, each
// announced by a record in the small ring (its pages are only touched once large messages flow).
// Side 0 writes rings 0 (small) and 2 (large) and reads 1 and 3; side 1 the reverse.
#pragma once

#include <cstdint>

#include "os.h"
#include "ring.h"

namespace crossport {

struct SegmentHeader {
  uint32_t magic;
  uint32_t version;
  uint64_t ring_capacity;   // read once when adopting, checked against the fd's size
  uint64_t large_capacity;  // likewise
  uint8_t reserved[40];
};
static_assert(sizeof(SegmentHeader) == 64, "segment header layout");

constexpr uint32_t kSegmentMagic = 0x43525350;  // "CRSP"
constexpr uint32_t kSegmentVersion = 5;
constexpr uint64_t kRingsOffset = sizeof(SegmentHeader);
constexpr uint64_t kDataOffset = kRingsOffset + 4 * sizeof(RingControl);

class Segment {
 public:
  // Creates a new segment: small rings of `ring_capacity` bytes, large ones of `large_capacity`.
  static Segment* Create(uint64_t ring_capacity, uint64_t large_capacity, os::SystemError* err);
  // Maps a segment received from elsewhere. Takes ownership of `fd` on success only.
  // Returns nullptr (EINVAL) if the fd is not a segment of a size this build accepts, sealed
  // so that nobody can resize it (os::Sealing::kFixedSize).
  static Segment* Adopt(int fd, os::SystemError* err);
  // True when Adopt would take `fd`; reads only (no mapping, no change to the fd).
  static bool IsSegment(int fd);
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
  uint64_t large_capacity() const { return large_capacity_; }
  // The ring `side` writes into, and the one it reads from.
  Ring SendRing(int side) { return MakeRing(side, true); }
  Ring ReceiveRing(int side) { return MakeRing(1 - side, false); }
  Ring LargeSendRing(int side) { return MakeRing(2 + side, true); }
  Ring LargeReceiveRing(int side) { return MakeRing(3 - side, false); }

 private:
  Segment(int fd, uint8_t* base, uint64_t size, uint64_t ring_capacity, uint64_t large_capacity)
      : fd_(fd), base_(base), size_(size), ring_capacity_(ring_capacity),
        large_capacity_(large_capacity) {}
  Ring MakeRing(int index, bool producer);
  // Reads and checks what Adopt needs: the size (fixed for good by the seals) and the header.
  static bool Inspect(int fd, SegmentHeader* header, int64_t* size);

  int fd_;
  uint8_t* base_;
  uint64_t size_;
  uint64_t ring_capacity_;
  uint64_t large_capacity_;
};

}  // namespace crossport
