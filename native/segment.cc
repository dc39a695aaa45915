#include "segment.h"

#include <cstring>
#include <cerrno>
#include <new>

namespace crossport {

Segment* Segment::Create(uint64_t ring_capacity, os::SystemError* err) {
  if (!Ring::ValidCapacity(ring_capacity)) {
    *err = os::SystemError{EINVAL, "crossport_segment"};
    return nullptr;
  }
  uint64_t size = kDataOffset + 2 * ring_capacity;
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
  memcpy(base, &header, sizeof header);
  return new Segment(fd, base, size, ring_capacity);
}

Segment* Segment::Adopt(int fd, os::SystemError* err) {
  int64_t size = os::FileSize(fd);
  if (size < static_cast<int64_t>(kDataOffset)) {
    *err = os::SystemError{EINVAL, "crossport_segment"};
    return nullptr;
  }
  uint64_t capacity = (static_cast<uint64_t>(size) - kDataOffset) / 2;
  if (!Ring::ValidCapacity(capacity) || kDataOffset + 2 * capacity != static_cast<uint64_t>(size)) {
    *err = os::SystemError{EINVAL, "crossport_segment"};
    return nullptr;
  }
  auto* base = static_cast<uint8_t*>(os::MapShared(fd, size, true, err));
  if (base == nullptr) return nullptr;
  SegmentHeader header;
  memcpy(&header, base, sizeof header);
  if (header.magic != kSegmentMagic || header.version != kSegmentVersion) {
    os::Unmap(base, size);
    *err = os::SystemError{EINVAL, "crossport_segment"};
    return nullptr;
  }
  return new Segment(fd, base, size, capacity);
}

Segment::~Segment() {
  os::Unmap(base_, size_);
  os::Close(fd_);
}

Ring Segment::MakeRing(int index, bool producer) {
  auto* control = reinterpret_cast<RingControl*>(base_ + kRingsOffset) + index;
  uint8_t* data = base_ + kDataOffset + static_cast<uint64_t>(index) * ring_capacity_;
  return Ring(control, data, ring_capacity_, producer);
}

}  // namespace crossport
