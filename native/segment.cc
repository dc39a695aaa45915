#include "segment.h"

#include <cstring>
#include <cerrno>
#include <new>

namespace crossport {

namespace {

uint64_t SegmentSize(uint64_t ring_capacity, uint64_t large_capacity) {
  return kDataOffset + 2 * ring_capacity + 2 * large_capacity;
}

}  // namespace

Segment* Segment::Create(uint64_t ring_capacity, uint64_t large_capacity, os::SystemError* err) {
  if (!Ring::ValidCapacity(ring_capacity) || !Ring::ValidCapacity(large_capacity)) {
    *err = os::SystemError{EINVAL, "crossport_segment"};
    return nullptr;
  }
  uint64_t size = SegmentSize(ring_capacity, large_capacity);
  int fd = os::CreateSharedMemory(size, err);
  if (fd < 0) return nullptr;
  auto* base = static_cast<uint8_t*>(os::MapShared(fd, size, true, err));
  if (base == nullptr) {
    os::Close(fd);
    return nullptr;
  }
  // A new memory object reads as zeros: positions and flags start at 0.
  SegmentHeader header{};
  header.magic = kSegmentMagic;
  header.version = kSegmentVersion;
  header.ring_capacity = ring_capacity;
  header.large_capacity = large_capacity;
  memcpy(base, &header, sizeof header);
  return new Segment(fd, base, size, ring_capacity, large_capacity);
}

bool Segment::Inspect(int fd, SegmentHeader* header, int64_t* size) {
  // The seals first (they fix the size for good), then the header, read with pread into our own
  // copy; nothing is mapped.
  *size = os::SealedSize(fd, os::Sealing::kFixedSize);
  return *size >= static_cast<int64_t>(kDataOffset) && os::ReadAt(fd, header, sizeof *header, 0) &&
         header->magic == kSegmentMagic && header->version == kSegmentVersion &&
         Ring::ValidCapacity(header->ring_capacity) && Ring::ValidCapacity(header->large_capacity) &&
         SegmentSize(header->ring_capacity, header->large_capacity) == static_cast<uint64_t>(*size);
}

bool Segment::IsSegment(int fd) {
  SegmentHeader header;
  int64_t size;
  return Inspect(fd, &header, &size);
}

Segment* Segment::Adopt(int fd, os::SystemError* err) {
  // Nothing is mapped before it is known to be a segment that nobody can resize; from then on
  // only our checked copies of the capacities and size are used.
  SegmentHeader header;
  int64_t size;
  if (!Inspect(fd, &header, &size)) {
    *err = os::SystemError{EINVAL, "crossport_segment"};
    return nullptr;
  }
  auto* base = static_cast<uint8_t*>(os::MapShared(fd, size, true, err));
  if (base == nullptr) return nullptr;
  return new Segment(fd, base, size, header.ring_capacity, header.large_capacity);
}

Segment::~Segment() {
  os::Unmap(base_, size_);
  os::Close(fd_);
}

Ring Segment::MakeRing(int index, bool producer) {
  auto* control = reinterpret_cast<RingControl*>(base_ + kRingsOffset) + index;
  // Rings 0 and 1 are small, 2 and 3 large, laid out in that order.
  if (index < 2) {
    uint8_t* data = base_ + kDataOffset + static_cast<uint64_t>(index) * ring_capacity_;
    return Ring(control, data, ring_capacity_, producer);
  }
  uint8_t* data = base_ + kDataOffset + 2 * ring_capacity_ +
                  static_cast<uint64_t>(index - 2) * large_capacity_;
  return Ring(control, data, large_capacity_, producer);
}

}  // namespace crossport
