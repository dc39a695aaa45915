#include "message.h"

#include <cstring>

namespace crossport {

namespace {

void Append(std::vector<uint8_t>* out, const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  out->insert(out->end(), bytes, bytes + size);
}

// The largest number of overflow records one transferred port may carry.
constexpr uint32_t kMaxOverflowRecords = 1 << 20;

}  // namespace

std::vector<uint8_t> EncodeMessageHead(std::vector<LinkState>* ports, std::vector<int>* fds) {
  std::vector<uint8_t> head(sizeof(MessageHead));
  for (LinkState& port : *ports) {
    PortDescriptor descriptor{static_cast<uint32_t>(port.side),
                              static_cast<uint32_t>(port.received_fds.size()),
                              static_cast<uint32_t>(port.overflow.size()), 0};
    Append(&head, &descriptor, sizeof descriptor);
    fds->push_back(port.segment_fd);
    fds->push_back(port.socket_fd);
    port.segment_fd = port.socket_fd = -1;
    fds->insert(fds->end(), port.received_fds.begin(), port.received_fds.end());
    port.received_fds.clear();
    for (PendingRecord& record : port.overflow) {
      OverflowDescriptor overflow{static_cast<uint16_t>(record.type), record.fd_count,
                                  static_cast<uint32_t>(record.fds.size() - record.fds_sent),
                                  record.payload.size()};
      Append(&head, &overflow, sizeof overflow);
      Append(&head, record.payload.data(), record.payload.size());
      head.resize(AlignRecord(head.size()));
      fds->insert(fds->end(), record.fds.begin() + record.fds_sent, record.fds.end());
      record.fds.clear();
    }
    port.overflow.clear();
  }
  MessageHead message{static_cast<uint32_t>(ports->size()), static_cast<uint32_t>(head.size())};
  memcpy(head.data(), &message, sizeof message);
  return head;
}

void CloseLinkState(LinkState* state) {
  os::Close(state->segment_fd);
  os::Close(state->socket_fd);
  state->segment_fd = state->socket_fd = -1;
  for (int fd : state->received_fds) os::Close(fd);
  state->received_fds.clear();
  for (PendingRecord& record : state->overflow) {
    for (size_t i = record.fds_sent; i < record.fds.size(); i++) os::Close(record.fds[i]);
  }
  state->overflow.clear();
}

bool DecodeMessageHead(const uint8_t* data, size_t size, std::vector<int>* fds,
                       std::vector<LinkState>* ports, size_t* body_offset) {
  size_t next_fd = 0;
  auto take_fds = [&](size_t count, std::vector<int>* into) {
    if (count > fds->size() - next_fd) return false;
    into->insert(into->end(), fds->begin() + next_fd, fds->begin() + next_fd + count);
    next_fd += count;
    return true;
  };
  auto fail = [&]() {
    for (LinkState& port : *ports) CloseLinkState(&port);
    ports->clear();
    // The fds not yet taken stay in `fds`: their owner closes them.
    fds->erase(fds->begin(), fds->begin() + next_fd);
    return false;
  };

  MessageHead message;
  if (size < sizeof message) return fail();
  memcpy(&message, data, sizeof message);
  if (message.body_offset < sizeof message || message.body_offset > size ||
      message.port_count > kMaxPortsPerMessage) {
    return fail();
  }
  size_t at = sizeof message;
  const size_t end = message.body_offset;
  for (uint32_t i = 0; i < message.port_count; i++) {
    PortDescriptor descriptor;
    if (end - at < sizeof descriptor) return fail();
    memcpy(&descriptor, data + at, sizeof descriptor);
    at += sizeof descriptor;
    if (descriptor.side > 1 || descriptor.overflow_count > kMaxOverflowRecords) return fail();
    ports->emplace_back();
    LinkState& port = ports->back();
    port.side = static_cast<int>(descriptor.side);
    std::vector<int> pair;
    if (!take_fds(2, &pair)) return fail();
    port.segment_fd = pair[0];
    port.socket_fd = pair[1];
    if (!take_fds(descriptor.received_fd_count, &port.received_fds)) return fail();
    for (uint32_t r = 0; r < descriptor.overflow_count; r++) {
      OverflowDescriptor overflow;
      if (end - at < sizeof overflow) return fail();
      memcpy(&overflow, data + at, sizeof overflow);
      at += sizeof overflow;
      if (overflow.length > end - at || AlignRecord(overflow.length) > end - at) return fail();
      auto type = static_cast<RecordType>(overflow.type);
      if (type != RecordType::kMessage && type != RecordType::kOutOfBand &&
          type != RecordType::kClose) {
        return fail();
      }
      if (overflow.unsent_fd_count > overflow.fd_count) return fail();
      PendingRecord record{type, overflow.fd_count, {}, {}, 0};
      record.payload.assign(data + at, data + at + overflow.length);
      at += AlignRecord(overflow.length);
      // Fds the old owner had already sent are in the socket; only the rest travel here.
      if (!take_fds(overflow.unsent_fd_count, &record.fds)) return fail();
      port.overflow.push_back(std::move(record));
    }
  }
  if (at != end) return fail();
  fds->erase(fds->begin(), fds->begin() + next_fd);
  *body_offset = end;
  return true;
}

}  // namespace crossport
