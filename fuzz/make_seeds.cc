// Writes the seed corpus for peer_input_fuzz.cc into a directory: well-formed inputs for each
// mode, built with the real encoder and ring producer so that they track the current layouts.
// Usage: make_seeds <dir>
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../native/message.h"
#include "../native/ring.h"
#include "../native/segment.h"

namespace {

using Bytes = std::vector<uint8_t>;
std::string directory;
int written = 0;

void Write(const std::string& name, const Bytes& bytes) {
  std::string path = directory + "/" + name;
  FILE* file = fopen(path.c_str(), "wb");
  if (file == nullptr || fwrite(bytes.data(), 1, bytes.size(), file) != bytes.size()) {
    perror(path.c_str());
    _exit(1);
  }
  fclose(file);
  written++;
}

template <typename T>
void Put(Bytes* out, T value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out->insert(out->end(), p, p + sizeof value);
}

// A message payload as PortHandle::Post builds it: head (with `ports` ports) + a V8-ish body.
Bytes Message(int ports, int overflow_records, int received_fds,
              const std::vector<uint64_t>& sections = {}) {
  std::vector<crossport::LinkState> states(ports);
  for (crossport::LinkState& state : states) {
    state.segment_fd = -1;
    state.socket_fd = -1;
    state.side = 1;
    state.received_fds.assign(received_fds, -1);
    for (int r = 0; r < overflow_records; r++) {
      crossport::PendingRecord record{crossport::RecordType::kMessage, 1, Bytes(5 + r, 0x42), {-1}, 0};
      state.overflow.push_back(std::move(record));
    }
  }
  std::vector<int> fds;
  std::vector<crossport::Handle> handles;
  std::vector<crossport::BufferChunks> buffers;
  if (ports > 0) handles.push_back(crossport::Handle{crossport::HandleKind::kFileDescriptor, -1});
  if (overflow_records > 0) buffers.push_back({-1, -1});
  // V8 serialization of the string "hi" (version 15): FF 0F 22 02 'h' 'i'.
  const uint8_t body[] = {0xff, 0x0f, 0x22, 0x02, 'h', 'i'};
  Bytes head = crossport::EncodeMessageHead(&handles, &buffers, &states, sections, sizeof body, &fds);
  head.insert(head.end(), body, body + sizeof body);
  for (uint64_t length : sections) head.resize(head.size() + crossport::AlignSection(length), 0x5a);
  return head;
}

// Ring-script ops (see peer_input_fuzz.cc).
enum Op : uint8_t { kScribble, kSetPosition, kPeerRecord, kPeek, kPost, kSleepFlags, kReopen };

void PeerRecord(Bytes* out, uint8_t type_minus_one, uint8_t fds, const Bytes& payload) {
  out->push_back(kPeerRecord);
  out->push_back(type_minus_one);
  out->push_back(fds);
  Put<uint16_t>(out, static_cast<uint16_t>(payload.size()));
  out->insert(out->end(), payload.begin(), payload.end());
}

void Peek(Bytes* out, uint8_t fds) {
  out->push_back(kPeek);
  out->push_back(fds);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <dir>\n", argv[0]);
    return 2;
  }
  directory = argv[1];

  // Mode 2: the decoder alone.
  for (int ports = 0; ports <= 2; ports++) {
    for (int overflow = 0; overflow <= 2; overflow++) {
      Bytes seed{2, static_cast<uint8_t>((ports > 0) + (overflow > 0) + ports * (2 + 1 + overflow))};
      Bytes message = Message(ports, overflow, 1);
      seed.insert(seed.end(), message.begin(), message.end());
      Write("decode-" + std::to_string(ports) + "-" + std::to_string(overflow), seed);
    }
  }
  {
    Bytes seed{2, 0};
    Bytes message = Message(0, 0, 0, {3, 20});
    seed.insert(seed.end(), message.begin(), message.end());
    Write("decode-sections", seed);
  }

  // Mode 0: ring scripts.
  {
    Bytes seed{0};
    PeerRecord(&seed, 1, 0, Message(0, 0, 0));
    Peek(&seed, 0);
    PeerRecord(&seed, 1, 3, Message(1, 0, 1));
    Peek(&seed, 3);
    PeerRecord(&seed, 3, 0, {});  // close
    Peek(&seed, 0);
    Write("ring-messages", seed);
  }
  {
    // Enough traffic to wrap both rings (padding records), with sleeps and a reopen.
    Bytes seed{0};
    for (int i = 0; i < 12; i++) {
      PeerRecord(&seed, 1, 0, Bytes(400 + i * 7, static_cast<uint8_t>(i)));
      Peek(&seed, 0);
      seed.push_back(kPost);
      Put<uint16_t>(&seed, static_cast<uint16_t>(500 + i));
      seed.push_back(static_cast<uint8_t>(i));
      if (i % 4 == 3) seed.push_back(kSleepFlags);
      if (i == 6) seed.push_back(kReopen);
    }
    Write("ring-wrap", seed);
  }
  {
    // A peer that moves its write position past what it wrote, then scribbles a header.
    Bytes seed{0};
    PeerRecord(&seed, 1, 0, Message(0, 0, 0));
    seed.push_back(kSetPosition);
    seed.push_back(0);
    Put<uint64_t>(&seed, 64);
    seed.push_back(kScribble);
    Put<uint16_t>(&seed, 256);
    seed.push_back(8);
    Put<uint32_t>(&seed, 4000);
    Put<uint16_t>(&seed, 2);
    Put<uint16_t>(&seed, 0);
    Peek(&seed, 0);
    Write("ring-scribble", seed);
  }

  // Mode 1: whole segments as Segment::Create makes them, with records in ring 0.
  for (uint64_t capacity : {4096, 8192}) {
    crossport::os::SystemError error{0, nullptr};
    crossport::Segment* segment = crossport::Segment::Create(capacity, capacity, &error);
    if (segment == nullptr) return 1;
    crossport::Ring producer = segment->SendRing(0);
    for (int i = 0; i < 3; i++) {
      Bytes message = Message(i % 2, i % 2, 0);
      uint8_t* at = producer.Reserve(static_cast<uint32_t>(message.size()));
      memcpy(at, message.data(), message.size());
      producer.Commit(crossport::RecordType::kMessage, i % 2 ? 3 : 0);
    }
    uint64_t size = crossport::kDataOffset + 4 * capacity;
    Bytes content(size);
    if (pread(segment->fd(), content.data(), size, 0) != static_cast<ssize_t>(size)) return 1;
    // Small = large capacity, no size delta, the seals Segment::Create puts on.
    Bytes seed{1, static_cast<uint8_t>(capacity == 4096 ? 1 : 2 | 0x40), 0,
               F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL};
    seed.insert(seed.end(), content.begin(), content.end());
    seed.push_back(1);  // after the content: side 1 adopts it, and reads ring 0
    Write("adopt-" + std::to_string(capacity), seed);
    delete segment;
  }
  printf("%d seeds in %s\n", written, directory.c_str());
  return 0;
}
