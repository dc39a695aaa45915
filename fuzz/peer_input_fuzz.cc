// Fuzz target for the code that parses what the other process wrote: the ring consumer
// (Peek / Consume over indices and bytes a hostile peer controls, while it keeps scribbling),
// the producer's use of the peer's read position, Segment::Adopt's header and size validation,
// and DecodeMessageHead (message.cc) with its fd accounting.
//
// The first input byte picks one of three modes; the rest is interpreted by that mode:
//
//   kRingScript    a list of operations on two rings in one buffer laid out like a segment:
//                  we consume ring 0 (the peer produces it) and produce ring 1 (the peer consumes
//                  it). The peer's operations scribble bytes or positions anywhere, or write a
//                  well-formed record (so the fuzzer reaches the decoder through the ring).
//   kAdopt         a memory object of a fuzzer-chosen size, content and seals given to
//                  Segment::Adopt (and to os::SealedSize as an out-of-band object would be):
//                  only a correctly sized one sealed against resizing is accepted, and what it
//                  accepts is then read and written through both rings.
//   kDecode        DecodeMessageHead on the bytes, with a fuzzer-chosen number of fds.
//
// Fds given to the decoder are distinct negative numbers: os::Close ignores them, so nothing
// real is closed, and the harness can check that every fd ends up owned exactly once.
//
// Built by scripts/fuzz.sh with libFuzzer (clang), or with the standalone driver in
// fuzz/standalone_driver.cc when clang is not available.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "../native/message.h"
#include "../native/os.h"
#include "../native/ring.h"
#include "../native/segment.h"
#include "fuzz_input.h"

namespace {

using crossport::AlignRecord;
using crossport::DecodeMessageHead;
using crossport::LinkState;
using crossport::ReadStatus;
using crossport::RecordHeader;
using crossport::RecordType;
using crossport::RecordView;
using crossport::Ring;
using crossport::RingControl;

// Runs the decoder the way PortHandle::Decode does, on a private heap copy of exactly `size`
// bytes (so ASan sees any read past it), with `fd_count` fake fds, and checks the fd accounting.
void Decode(const uint8_t* data, size_t size, size_t fd_count) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[size == 0 ? 1 : size]);
  if (size > 0) memcpy(copy.get(), data, size);
  std::vector<int> fds;
  for (size_t i = 0; i < fd_count; i++) fds.push_back(-2 - static_cast<int>(i));
  const std::vector<int> given = fds;
  std::vector<crossport::Handle> handles;
  std::vector<crossport::BufferChunks> buffers;
  std::vector<LinkState> ports;
  crossport::MessageLayout layout;
  bool ok = DecodeMessageHead(copy.get(), size, size, &fds, &handles, &buffers, &ports, &layout);
  // Whatever happened, the fds left in `fds` are the untaken tail of what was given.
  CHECK(fds.size() <= given.size());
  CHECK(std::equal(fds.begin(), fds.end(), given.end() - fds.size()));
  if (!ok) {
    CHECK(ports.empty() && handles.empty() && buffers.empty());
    return;
  }
  CHECK(layout.body_offset >= sizeof(crossport::MessageHead) && layout.body_offset <= size);
  CHECK(layout.body_size <= size - layout.body_offset);
  // The sections lie after the body and end exactly where the payload does.
  CHECK(layout.sections.size() <= crossport::kMaxSectionsPerMessage);
  CHECK(layout.total_size() == size);
  CHECK(ports.size() <= crossport::kMaxPortsPerMessage);
  CHECK(handles.size() <= crossport::kMaxHandlesPerMessage);
  CHECK(buffers.size() <= crossport::kMaxBuffersPerMessage);
  // The fds the handles, buffers and ports own, in order, are exactly the taken head of what
  // was given.
  std::vector<int> owned;
  for (const crossport::Handle& handle : handles) {
    CHECK(static_cast<uint32_t>(handle.kind) >= 1 &&
          static_cast<uint32_t>(handle.kind) <= crossport::kLastHandleKind);
    owned.push_back(handle.fd);
  }
  for (const crossport::BufferChunks& chunks : buffers) {
    CHECK(!chunks.empty() && chunks.size() <= crossport::os::kMaxChunks);
    owned.insert(owned.end(), chunks.begin(), chunks.end());
  }
  for (LinkState& port : ports) {
    CHECK(port.side == 0 || port.side == 1);
    owned.push_back(port.segment_fd);
    owned.push_back(port.socket_fd);
    owned.insert(owned.end(), port.received_fds.begin(), port.received_fds.end());
    for (const crossport::PendingRecord& record : port.overflow) {
      CHECK(record.fds.size() <= record.fd_count);
      CHECK(record.type == RecordType::kMessage || record.type == RecordType::kOutOfBand ||
            record.type == RecordType::kClose || record.type == RecordType::kLarge);
      owned.insert(owned.end(), record.fds.begin(), record.fds.end());
    }
    for (const crossport::PendingRecord& record : port.unread) {
      // A read record is a message, or the fds read ahead for one (kFds, empty); whole.
      CHECK((record.type == RecordType::kMessage ||
             (record.type == RecordType::kFds && record.payload.empty())) &&
            record.fds.size() == record.fd_count);
      owned.insert(owned.end(), record.fds.begin(), record.fds.end());
    }
  }
  CHECK(owned.size() + fds.size() == given.size());
  CHECK(std::equal(owned.begin(), owned.end(), given.begin()));
  for (LinkState& port : ports) crossport::CloseLinkState(&port);
}

// Our side's use of a ring as consumer: what PortHandle::Dispatch does through Link::Next.
// Returns false when the ring reported corruption (the link would be closed).
bool ConsumeOne(Ring* ring, const uint8_t* data, uint64_t capacity, size_t fd_count) {
  RecordView view;
  ReadStatus status = ring->Peek(&view);
  if (status == ReadStatus::kCorrupt) {
    CHECK(ring->corrupt());
    return false;
  }
  if (status == ReadStatus::kEmpty) return true;
  CHECK(view.type == RecordType::kMessage || view.type == RecordType::kOutOfBand ||
        view.type == RecordType::kClose || view.type == RecordType::kLarge ||
        view.type == RecordType::kFds);
  CHECK(view.payload >= data + sizeof(RecordHeader));
  CHECK(view.payload + view.length <= data + capacity);
  std::vector<uint8_t> payload(view.payload, view.payload + view.length);  // copy, then parse
  if (view.type == RecordType::kMessage) Decode(payload.data(), payload.size(), fd_count);
  ring->Consume();
  return true;
}

// Our side's use of a ring as producer: the pointer it gets must lie inside the ring.
void ProduceOne(Ring* ring, uint8_t* data, uint64_t capacity, uint32_t length, uint8_t fill) {
  uint8_t* at = ring->Reserve(length);
  if (at == nullptr) {
    ring->MarkWriterWaiting();
    return;
  }
  CHECK(at >= data + sizeof(RecordHeader));
  CHECK(at + AlignRecord(length) <= data + capacity);
  memset(at, fill, length);
  ring->Commit(RecordType::kMessage, 0);
}

constexpr uint64_t kCapacity = 4096;  // the smallest capacity a ring may have

enum Op : uint8_t {
  kScribble,       // peer: bytes anywhere in the shared area
  kSetPosition,    // peer: any 64-bit value into any position field
  kPeerRecord,     // peer: a well-formed record in ring 0, through an honest producer
  kPeek,           // us: read one record of ring 0
  kPost,           // us: write one record into ring 1
  kSleepFlags,     // us: the sleep / wake handshake on both rings
  kReopen,         // us: rebuild our rings from shared memory (a port that moved here)
  kScribbleNear,   // peer: bytes at a small distance from where a ring's reader stands
  kOpCount,
};

void RunRingScript(Input* in) {
  // The shared area exactly as a segment lays it out after its header: two controls, two rings.
  const size_t controls = 2 * sizeof(RingControl);
  const size_t size = controls + 2 * kCapacity;
  std::unique_ptr<uint8_t[], decltype(&free)> area(
      static_cast<uint8_t*>(aligned_alloc(64, size)), &free);
  memset(area.get(), 0, size);
  auto* control = reinterpret_cast<RingControl*>(area.get());
  uint8_t* data0 = area.get() + controls;
  uint8_t* data1 = data0 + kCapacity;
  Ring receive(&control[0], data0, kCapacity, false);
  Ring send(&control[1], data1, kCapacity, true);
  Ring peer(&control[0], data0, kCapacity, true);  // the peer's honest producer, when it is one
  bool broken = false;
  for (int steps = 0; !in->empty() && steps < 4096; steps++) {
    switch (in->U8() % kOpCount) {
      case kScribble: {
        size_t offset = in->Get<uint16_t>() % size;
        size_t n = std::min<size_t>(in->U8(), size - offset);
        const uint8_t* bytes = in->Take(&n);
        memcpy(area.get() + offset, bytes, n);
        break;
      }
      case kSetPosition: {
        // Raw 64-bit values rarely land near the positions in use, so most of the time the
        // value is one of the ring's current positions plus a small signed distance.
        uint8_t which = in->U8();
        std::atomic<uint64_t>& field = which & 2 ? control[which & 1].read_pos
                                                 : control[which & 1].write_pos;
        uint64_t value;
        if (which & 4) {
          value = in->Get<uint64_t>();
        } else {
          const RingControl& ring = control[(which >> 3) & 1];
          uint64_t base = (which & 16 ? ring.read_pos : ring.write_pos).load();
          value = base + static_cast<uint64_t>(static_cast<int64_t>(in->Get<int16_t>()));
        }
        field.store(value, std::memory_order_relaxed);
        break;
      }
      case kScribbleNear: {
        uint8_t which = in->U8();
        const RingControl& ring = control[which & 1];
        uint64_t position = (which & 2 ? ring.read_pos : ring.write_pos).load();
        uint8_t* data = which & 1 ? data1 : data0;
        size_t offset = (position + 8 * static_cast<uint64_t>(in->U8())) % kCapacity;
        size_t n = std::min<size_t>(in->U8() % 32, kCapacity - offset);
        const uint8_t* bytes = in->Take(&n);
        memcpy(data + offset, bytes, n);
        break;
      }
      case kPeerRecord: {
        uint8_t type = 1 + in->U8() % 6;
        uint16_t fd_count = in->U8() % 4;
        size_t n = in->Get<uint16_t>() % 2048;
        const uint8_t* bytes = in->Take(&n);
        uint8_t* at = peer.Reserve(static_cast<uint32_t>(n));
        if (at != nullptr) {
          memcpy(at, bytes, n);
          peer.Commit(static_cast<RecordType>(type), fd_count);
        }
        break;
      }
      case kPeek:
        if (!broken) broken = !ConsumeOne(&receive, data0, kCapacity, in->U8() % 8);
        break;
      case kPost: {
        uint32_t length = in->Get<uint16_t>() % 4096;
        ProduceOne(&send, data1, kCapacity, length, in->U8());
        break;
      }
      case kSleepFlags:
        receive.PrepareSleep();
        receive.TakeWriterWaiting();
        send.MarkWriterWaiting();
        break;
      case kReopen:
        receive = Ring(&control[0], data0, kCapacity, false);
        send = Ring(&control[1], data1, kCapacity, true);
        broken = false;
        break;
    }
  }
  // Drain what is left, as a started port would, until empty or corrupt; it must end.
  for (int i = 0; i < 1024 && !broken; i++) broken = !ConsumeOne(&receive, data0, kCapacity, 4);
}

// The seals a peer may have put on a memory object it sends.
constexpr int kAnySeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;

// A memory object of `size` bytes holding `content`, then sealed with `seals`, as a peer could
// send it. Asks os::SealedSize whether it would be mapped as an out-of-band object and
// Segment::Adopt whether it would be mapped as a segment, and checks both answers against the
// seals; returns the segment if adopted.
std::unique_ptr<crossport::Segment> AdoptSealed(uint64_t size, const uint8_t* content, size_t n,
                                                int seals) {
  int fd = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  CHECK(fd >= 0);
  CHECK(ftruncate(fd, static_cast<off_t>(size)) == 0);
  if (n > 0) CHECK(pwrite(fd, content, n, 0) == static_cast<ssize_t>(n));
  if (seals != 0) CHECK(fcntl(fd, F_ADD_SEALS, seals) == 0);
  // An out-of-band object: sealed read-only, whatever its size.
  const int read_only = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;
  int64_t sealed_size = crossport::os::SealedSize(fd, crossport::os::Sealing::kReadOnly);
  CHECK(sealed_size == ((seals & read_only) == read_only ? static_cast<int64_t>(size) : -1));
  crossport::os::SystemError error{0, nullptr};
  std::unique_ptr<crossport::Segment> segment(crossport::Segment::Adopt(fd, &error));
  if (!segment) {
    close(fd);  // not taken on failure
    return segment;
  }
  // A segment: it can neither shrink nor grow nor take more seals, and both sides can write it.
  const int fixed_size = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  CHECK((seals & fixed_size) == fixed_size && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) == 0);
  CHECK(ftruncate(fd, 0) != 0 && ftruncate(fd, static_cast<off_t>(size + 4096)) != 0);
  return segment;
}

void RunAdopt(Input* in) {
  // Sizes near the valid ones are the interesting ones: small and large capacities of 4096 or
  // 8192 give kDataOffset + 2 * (small + large); the fuzzer adds a small delta, or picks a size
  // outright. The header it writes must name the capacities that make up the size.
  uint8_t choice = in->U8();
  int64_t delta = static_cast<int8_t>(in->U8());
  int chosen_seals = in->U8() & kAnySeals;
  uint64_t size;
  if (choice % 4 == 0) {
    size = in->Get<uint32_t>() % (64 * 1024);
  } else {
    uint64_t small = choice % 4 == 1 ? 4096 : choice % 4 == 2 ? 8192 : 2048;
    uint64_t large = choice & 0x40 ? 8192 : 4096;
    size = static_cast<uint64_t>(static_cast<int64_t>(crossport::kDataOffset + 2 * (small + large)) +
                                 (choice & 0x80 ? delta : 0));
  }
  size_t n = std::min<size_t>(in->remaining(), size);
  const uint8_t* content = in->Take(&n);
  int side = in->U8() & 1;
  // The seals the fuzzer chose, and each of them flipped: the kernel keeps the seals out of
  // the fuzzer's sight (no branch of ours compares the byte), so each input also tries every
  // seal set one seal away from its own. At most one of them is the set a segment requires.
  std::unique_ptr<crossport::Segment> segment;
  for (int flip = -1; flip < 5; flip++) {
    int seals = flip < 0 ? chosen_seals : chosen_seals ^ (1 << flip);
    std::unique_ptr<crossport::Segment> adopted = AdoptSealed(size, content, n, seals & kAnySeals);
    if (adopted) segment = std::move(adopted);
  }
  if (!segment) return;
  uint64_t capacity = segment->ring_capacity();
  uint64_t large = segment->large_capacity();
  CHECK(Ring::ValidCapacity(capacity) && Ring::ValidCapacity(large));
  CHECK(crossport::kDataOffset + 2 * (capacity + large) == size);
  // Use the accepted segment as both sides would, through a second mapping of the same object
  // laid out as Segment::MakeRing does, so that every view can be checked against its ring.
  crossport::os::SystemError error{0, nullptr};
  auto* base = static_cast<uint8_t*>(crossport::os::MapShared(segment->fd(), size, true, &error));
  CHECK(base != nullptr);
  auto* control = reinterpret_cast<RingControl*>(base + crossport::kRingsOffset);
  uint8_t* data0 = base + crossport::kDataOffset;
  uint8_t* data1 = data0 + capacity;
  uint8_t* large0 = data1 + capacity;
  uint8_t* large1 = large0 + large;
  Ring receive(&control[1 - side], side ? data0 : data1, capacity, false);
  Ring send(&control[side], side ? data1 : data0, capacity, true);
  Ring receive_large(&control[3 - side], side ? large0 : large1, large, false);
  for (int i = 0; i < 256; i++) {
    if (!ConsumeOne(&receive, side ? data0 : data1, capacity, 3)) break;
  }
  for (int i = 0; i < 64; i++) {
    if (!ConsumeOne(&receive_large, side ? large0 : large1, large, 0)) break;
  }
  for (int i = 0; i < 8; i++) ProduceOne(&send, side ? data1 : data0, capacity, 100 * i, 0xab);
  crossport::os::Unmap(base, size);
}

void RunDecode(Input* in) {
  size_t fd_count = in->U8();
  size_t n = in->remaining();
  const uint8_t* bytes = in->Take(&n);
  Decode(bytes, n, fd_count);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  switch (in.U8() % 3) {
    case 0:
      RunRingScript(&in);
      break;
    case 1:
      RunAdopt(&in);
      break;
    case 2:
      RunDecode(&in);
      break;
  }
  return 0;
}
