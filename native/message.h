// The layout of a message record's payload:
//
//   MessageHead { handle_count, port_count, body_offset, buffer_count }
//   handle_count × HandleDescriptor
//   port_count × { PortDescriptor,
//                  overflow_count × (RecordDescriptor, payload padded to 8),
//                  unread_count × (RecordDescriptor, payload padded to 8) }
//   V8 serialized bytes, from body_offset to the end
//
// The record's fds are: one per handle, in order; one per transferred ArrayBuffer (a sealed
// memory object holding its bytes, mapped by the receiver); then, per port in order: segment, socket, the
// fds it had received but no record had claimed yet, the unsent fds of each of its overflow
// records, and the fds of each record it had read but not delivered.
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
};

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

static_assert(sizeof(MessageHead) == 16 && sizeof(HandleDescriptor) == 8 &&
                  sizeof(PortDescriptor) == 16 && sizeof(RecordDescriptor) == 16,
              "message layout");

// A transferred OS handle: its kind and its fd (owned).
struct Handle {
  HandleKind kind;
  int fd;
};

// Encodes the head for `handles`, `buffers` (fds of sealed copies) and `ports`, moving their
// fds (in order) into `fds`.
std::vector<uint8_t> EncodeMessageHead(std::vector<Handle>* handles, std::vector<int>* buffers,
                                       std::vector<LinkState>* ports, std::vector<int>* fds);

// Reads only the handle kinds of a head, taking nothing; false for a malformed head.
bool PeekHandleKinds(const uint8_t* data, size_t size, std::vector<HandleKind>* kinds);

// Decodes a head. Takes the fds it names from the front of `fds` (ownership moves into
// `handles` and `ports`). Returns false for a malformed head; fds already taken are then closed.
bool DecodeMessageHead(const uint8_t* data, size_t size, std::vector<int>* fds,
                       std::vector<Handle>* handles, std::vector<int>* buffers,
                       std::vector<LinkState>* ports, size_t* body_offset);

// Closes every fd a LinkState owns.
void CloseLinkState(LinkState* state);

}  // namespace crossport
