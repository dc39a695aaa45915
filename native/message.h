// The layout of a message record's payload:
//
//   MessageHead { port_count, body_offset }
//   port_count × { PortDescriptor, overflow_count × (OverflowDescriptor, payload padded to 8) }
//   V8 serialized bytes, from body_offset to the end
//
// The record's fds are, per port in order: segment, socket, the fds it had received but no
// record had claimed yet, then the unsent fds of each of its overflow records.
// Decoding trusts nothing: every count and length is checked against the payload and the fds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "link.h"

namespace crossport {

struct MessageHead {
  uint32_t port_count;
  uint32_t body_offset;
};

struct PortDescriptor {
  uint32_t side;
  uint32_t received_fd_count;
  uint32_t overflow_count;
  uint32_t reserved;
};

struct OverflowDescriptor {
  uint16_t type;
  uint16_t fd_count;        // what the record announces
  uint32_t unsent_fd_count;  // fds still to send before the record (they travel with it)
  uint64_t length;
};

// The most ports one message may transfer (the receiver refuses more).
constexpr uint32_t kMaxPortsPerMessage = 1024;

static_assert(sizeof(MessageHead) == 8 && sizeof(PortDescriptor) == 16 &&
                  sizeof(OverflowDescriptor) == 16,
              "message layout");

// Encodes the head for `ports`, moving their fds (in order) into `fds`.
std::vector<uint8_t> EncodeMessageHead(std::vector<LinkState>* ports, std::vector<int>* fds);

// Decodes a head. Takes the fds it names from the front of `fds` (ownership moves into `ports`).
// Returns false for a malformed head; fds already taken are then closed.
bool DecodeMessageHead(const uint8_t* data, size_t size, std::vector<int>* fds,
                       std::vector<LinkState>* ports, size_t* body_offset);

// Closes every fd a LinkState owns.
void CloseLinkState(LinkState* state);

}  // namespace crossport
