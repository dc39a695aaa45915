// The layout of a message record's payload:
//
//   MessageHead { handle_count, port_count, body_offset, buffer_count, section_count, body_size }
//   section_count × u64 section length
//   handle_count × HandleDescriptor
//   buffer_count × BufferDescriptor
//   port_count × { PortDescriptor,
//                  overflow_count × (RecordDescriptor, payload padded to 8),
//                  unread_count × (RecordDescriptor, payload padded to 8) }
//   V8 serialized bytes: body_size bytes from body_offset
//   section_count × the contents of an ArrayBuffer, each padded to kSectionAlign
//
// Sections carry the bytes of large ArrayBuffers (cloned behind a view, or transferred) apart
// from V8's bytes, so that the receiver copies them once, into the memory the new ArrayBuffers
// then use (the serializer refers to each by a transfer id, after those of out-of-band buffers).
// Everything before the sections is the message's prefix: the part that is parsed, and so must
// be copied out of shared memory first.
//
// The record's fds are: one per handle, in order; per transferred ArrayBuffer, its chunks (sealed
// memory objects holding its bytes, mapped end to end by the receiver, see transferable.h);
// then, per port in order: segment, socket, the fds it had received but no record had claimed
// yet, the unsent fds of each of its overflow records, and the fds of each record it had read but
// not delivered (a kFds record among those: fds read for a record not yet published). Fds still
// in a port's socket travel in the socket.
// Decoding trusts nothing: every count and length is checked against the payload and the fds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "link.h"

namespace crossport {

struct MessageHead {
  uint32_t handle_count;
  uint32_t port_count;
  uint32_t body_offset;
  uint32_t buffer_count;
  uint32_t section_count;
  uint32_t reserved;
  uint64_t body_size;
};

constexpr uint64_t kSectionAlign = 16;
inline uint64_t AlignSection(uint64_t n) { return (n + kSectionAlign - 1) & ~(kSectionAlign - 1); }

// What kind of OS object a transferred fd is; the receiver rebuilds the same kind (lib/handles.ts).
enum class HandleKind : uint32_t {
  kSocket = 1,          // net.Socket
  kServer = 2,          // net.Server
  kUdp4 = 3,            // dgram.Socket, 'udp4'
  kUdp6 = 4,            // dgram.Socket, 'udp6'
  kFileHandle = 5,      // fs.promises.FileHandle
  kFileDescriptor = 6,  // crossport's FileDescriptor
};
constexpr uint32_t kLastHandleKind = 6;

struct HandleDescriptor {
  uint32_t kind;
  uint32_t reserved;
};

struct BufferDescriptor {
  uint32_t chunk_count;  // 1 to os::kMaxChunks
  uint32_t reserved;
};

struct PortDescriptor {
  uint32_t side;
  uint32_t received_fd_count;
  uint32_t overflow_count;
  uint32_t unread_count;
};

struct RecordDescriptor {
  uint16_t type;
  uint16_t fd_count;         // what the record announces
  uint32_t unsent_fd_count;  // fds that travel with the record here (not yet in the socket)
  uint64_t length;
};

// The most ports, and handles, one message may transfer (the receiver refuses more).
constexpr uint32_t kMaxPortsPerMessage = 1024;
constexpr uint32_t kMaxHandlesPerMessage = 1024;
constexpr uint32_t kMaxBuffersPerMessage = 1024;
constexpr uint32_t kMaxSectionsPerMessage = 4096;

static_assert(sizeof(MessageHead) == 32 && sizeof(HandleDescriptor) == 8 &&
                  sizeof(BufferDescriptor) == 8 &&
                  sizeof(PortDescriptor) == 16 && sizeof(RecordDescriptor) == 16,
              "message layout");

// A transferred OS handle: its kind and its fd (owned).
struct Handle {
  HandleKind kind;
  int fd;
};

// Where the parts of a message are, from its head.
struct MessageLayout {
  size_t body_offset = 0;
  uint64_t body_size = 0;
  std::vector<uint64_t> sections;  // lengths
  // Where the sections start: the end of the prefix.
  uint64_t sections_offset() const { return body_offset + body_size; }
  // The payload's size with its sections (padded); of a decoded layout, the record's size.
  uint64_t total_size() const;
};

// The fds of one transferred ArrayBuffer: its chunks, in order.
using BufferChunks = std::vector<int>;

// Encodes the head for `handles`, `buffers` (their chunks' fds), `ports` and `sections`
// (lengths), before a body of `body_size` bytes, moving the fds (in order) into `fds`.
std::vector<uint8_t> EncodeMessageHead(std::vector<Handle>* handles,
                                       std::vector<BufferChunks>* buffers,
                                       std::vector<LinkState>* ports,
                                       const std::vector<uint64_t>& sections, uint64_t body_size,
                                       std::vector<int>* fds);

// Reads only the handle kinds of a head, taking nothing; false for a malformed head.
bool PeekHandleKinds(const uint8_t* data, size_t size, std::vector<HandleKind>* kinds);

// Decodes a head from the `size` bytes of a prefix (which must hold the body; `total` is the
// whole payload's size, sections included). Takes the fds it names from the front of `fds`
// (ownership moves into `handles` and `ports`). Returns false for a malformed head; fds
// already taken are then closed.
bool DecodeMessageHead(const uint8_t* data, size_t size, uint64_t total, std::vector<int>* fds,
                       std::vector<Handle>* handles, std::vector<BufferChunks>* buffers,
                       std::vector<LinkState>* ports, MessageLayout* layout);

// Closes every fd a LinkState owns.
void CloseLinkState(LinkState* state);

}  // namespace crossport
