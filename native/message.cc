#include "message.h"

#include <cstring>

namespace crossport {

namespace {

void Append(std::vector<uint8_t>* out, const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  out->insert(out->end(), bytes, bytes + size);
}

// The largest number of overflow or unread records one transferred port may carry.
constexpr uint32_t kMaxCarriedRecords = 1 << 20;

// Appends one carried record: its descriptor, its payload, and (into `fds`) its unsent fds.
void EncodeRecord(PendingRecord* record, std::vector<uint8_t>* head, std::vector<int>* fds) {
  RecordDescriptor descriptor{static_cast<uint16_t>(record->type), record->fd_count,
                              static_cast<uint32_t>(record->fds.size() - record->fds_sent),
                              record->payload.size()};
  Append(head, &descriptor, sizeof descriptor);
  Append(head, record->payload.data(), record->payload.size());
  head->resize(AlignRecord(head->size()));
  fds->insert(fds->end(), record->fds.begin() + record->fds_sent, record->fds.end());
  record->fds.clear();
  record->fds_sent = 0;
}

void ClosePending(PendingRecord* record) {
  for (size_t i = record->fds_sent; i < record->fds.size(); i++) os::Close(record->fds[i]);
  record->fds.clear();
}

// Reads a head untrusted: each step checks what it reads against what is left.
class HeadReader {
 public:
  HeadReader(const uint8_t* data, size_t end) : data_(data), end_(end) {}

  template <typename T>
  bool Read(T* out) {
    if (end_ - at_ < sizeof(T)) return false;
    memcpy(out, data_ + at_, sizeof(T));
    at_ += sizeof(T);
    return true;
  }

  bool ReadPayload(uint64_t length, std::vector<uint8_t>* out) {
    if (length > end_ - at_ || AlignRecord(length) > end_ - at_) return false;
    out->assign(data_ + at_, data_ + at_ + length);
    at_ += AlignRecord(length);
    return true;
  }

  bool done() const { return at_ == end_; }

 private:
  const uint8_t* data_;
  size_t end_;
  size_t at_ = 0;
};

bool ReadMessageHead(const uint8_t* data, size_t size, MessageHead* message) {
  if (size < sizeof *message) return false;
  memcpy(message, data, sizeof *message);
  uint64_t sections_size = uint64_t{message->section_count} * sizeof(uint64_t);
  return message->body_offset >= sizeof *message + sections_size &&
         message->body_offset <= size && message->body_size <= size - message->body_offset &&
         message->port_count <= kMaxPortsPerMessage &&
         message->handle_count <= kMaxHandlesPerMessage &&
         message->buffer_count <= kMaxBuffersPerMessage &&
         message->section_count <= kMaxSectionsPerMessage;
}

bool ValidHandleKind(uint32_t kind) { return kind >= 1 && kind <= kLastHandleKind; }

}  // namespace

uint64_t MessageLayout::total_size() const {
  uint64_t total = sections_offset();
  for (uint64_t length : sections) total += AlignSection(length);
  return total;
}

std::vector<uint8_t> EncodeMessageHead(std::vector<Handle>* handles,
                                       std::vector<BufferChunks>* buffers,
                                       std::vector<LinkState>* ports,
                                       const std::vector<uint64_t>& sections, uint64_t body_size,
                                       std::vector<int>* fds) {
  std::vector<uint8_t> head(sizeof(MessageHead) + sections.size() * sizeof(uint64_t));
  if (!sections.empty()) {
    memcpy(head.data() + sizeof(MessageHead), sections.data(), sections.size() * sizeof(uint64_t));
  }
  for (Handle& handle : *handles) {
    HandleDescriptor descriptor{static_cast<uint32_t>(handle.kind), 0};
    Append(&head, &descriptor, sizeof descriptor);
    fds->push_back(handle.fd);
    handle.fd = -1;
  }
  for (BufferChunks& chunks : *buffers) {
    BufferDescriptor descriptor{static_cast<uint32_t>(chunks.size()), 0};
    Append(&head, &descriptor, sizeof descriptor);
    fds->insert(fds->end(), chunks.begin(), chunks.end());
    chunks.clear();
  }
  for (LinkState& port : *ports) {
    PortDescriptor descriptor{static_cast<uint32_t>(port.side),
                              static_cast<uint32_t>(port.received_fds.size()),
                              static_cast<uint32_t>(port.overflow.size()),
                              static_cast<uint32_t>(port.unread.size())};
    Append(&head, &descriptor, sizeof descriptor);
    fds->push_back(port.segment_fd);
    fds->push_back(port.socket_fd);
    port.segment_fd = port.socket_fd = -1;
    fds->insert(fds->end(), port.received_fds.begin(), port.received_fds.end());
    port.received_fds.clear();
    for (PendingRecord& record : port.overflow) EncodeRecord(&record, &head, fds);
    port.overflow.clear();
    for (PendingRecord& record : port.unread) EncodeRecord(&record, &head, fds);
    port.unread.clear();
  }
  MessageHead message{static_cast<uint32_t>(handles->size()),
                      static_cast<uint32_t>(ports->size()),
                      static_cast<uint32_t>(head.size()),
                      static_cast<uint32_t>(buffers->size()),
                      static_cast<uint32_t>(sections.size()),
                      0,
                      body_size};
  buffers->clear();
  memcpy(head.data(), &message, sizeof message);
  return head;
}

void CloseLinkState(LinkState* state) {
  os::Close(state->segment_fd);
  os::Close(state->socket_fd);
  state->segment_fd = state->socket_fd = -1;
  for (int fd : state->received_fds) os::Close(fd);
  state->received_fds.clear();
  for (PendingRecord& record : state->overflow) ClosePending(&record);
  state->overflow.clear();
  for (PendingRecord& record : state->unread) ClosePending(&record);
  state->unread.clear();
}

bool PeekHandleKinds(const uint8_t* data, size_t size, std::vector<HandleKind>* kinds) {
  MessageHead message;
  if (!ReadMessageHead(data, size, &message)) return false;
  size_t descriptors = sizeof message + message.section_count * sizeof(uint64_t);
  HeadReader reader(data + descriptors, message.body_offset - descriptors);
  for (uint32_t i = 0; i < message.handle_count; i++) {
    HandleDescriptor descriptor;
    if (!reader.Read(&descriptor) || !ValidHandleKind(descriptor.kind)) return false;
    kinds->push_back(static_cast<HandleKind>(descriptor.kind));
  }
  return true;
}

bool DecodeMessageHead(const uint8_t* data, size_t size, uint64_t total, std::vector<int>* fds,
                       std::vector<Handle>* handles, std::vector<BufferChunks>* buffers,
                       std::vector<LinkState>* ports, MessageLayout* layout) {
  size_t next_fd = 0;
  auto take_fds = [&](size_t count, std::vector<int>* into) {
    if (count > fds->size() - next_fd) return false;
    into->insert(into->end(), fds->begin() + next_fd, fds->begin() + next_fd + count);
    next_fd += count;
    return true;
  };
  auto fail = [&]() {
    for (Handle& handle : *handles) os::Close(handle.fd);
    handles->clear();
    for (BufferChunks& chunks : *buffers) {
      for (int fd : chunks) os::Close(fd);
    }
    buffers->clear();
    for (LinkState& port : *ports) CloseLinkState(&port);
    ports->clear();
    // The fds not yet taken stay in `fds`: their owner closes them.
    fds->erase(fds->begin(), fds->begin() + next_fd);
    return false;
  };
  // One carried record (overflow or unread): descriptor, payload, fds.
  auto read_record = [&](HeadReader* reader, PendingRecord* record) {
    RecordDescriptor descriptor;
    if (!reader->Read(&descriptor)) return false;
    auto type = static_cast<RecordType>(descriptor.type);
    if (type != RecordType::kMessage && type != RecordType::kOutOfBand &&
        type != RecordType::kClose && type != RecordType::kLarge && type != RecordType::kFds) {
      return false;
    }
    if (descriptor.unsent_fd_count > descriptor.fd_count) return false;
    *record = PendingRecord{type, descriptor.fd_count, {}, {}, 0};
    // Fds the old owner had already sent are in the socket; only the rest travel here.
    return reader->ReadPayload(descriptor.length, &record->payload) &&
           take_fds(descriptor.unsent_fd_count, &record->fds);
  };

  MessageHead message;
  if (!ReadMessageHead(data, size, &message)) return fail();
  layout->body_offset = message.body_offset;
  layout->body_size = message.body_size;
  layout->sections.resize(message.section_count);
  if (message.section_count > 0) {
    memcpy(layout->sections.data(), data + sizeof message,
           message.section_count * sizeof(uint64_t));
  }
  // The sections must fill the rest of the payload exactly (each length is checked before it
  // is added, so the sum cannot wrap).
  uint64_t end = layout->sections_offset();
  if (end > total) return fail();
  for (uint64_t length : layout->sections) {
    if (length > total - end || AlignSection(length) > total - end) return fail();
    end += AlignSection(length);
  }
  if (end != total) return fail();
  size_t descriptors = sizeof message + message.section_count * sizeof(uint64_t);
  HeadReader reader(data + descriptors, message.body_offset - descriptors);
  for (uint32_t i = 0; i < message.handle_count; i++) {
    HandleDescriptor descriptor;
    if (!reader.Read(&descriptor) || !ValidHandleKind(descriptor.kind)) return fail();
    std::vector<int> fd;
    if (!take_fds(1, &fd)) return fail();
    handles->push_back(Handle{static_cast<HandleKind>(descriptor.kind), fd[0]});
  }
  for (uint32_t i = 0; i < message.buffer_count; i++) {
    BufferDescriptor descriptor;
    if (!reader.Read(&descriptor) || descriptor.chunk_count == 0 ||
        descriptor.chunk_count > os::kMaxChunks) {
      return fail();
    }
    buffers->emplace_back();
    if (!take_fds(descriptor.chunk_count, &buffers->back())) return fail();
  }
  for (uint32_t i = 0; i < message.port_count; i++) {
    PortDescriptor descriptor;
    if (!reader.Read(&descriptor)) return fail();
    if (descriptor.side > 1 || descriptor.overflow_count > kMaxCarriedRecords ||
        descriptor.unread_count > kMaxCarriedRecords) {
      return fail();
    }
    ports->emplace_back();
    LinkState& port = ports->back();
    port.side = static_cast<int>(descriptor.side);
    std::vector<int> pair;
    if (!take_fds(2, &pair)) return fail();
    port.segment_fd = pair[0];
    port.socket_fd = pair[1];
    if (!take_fds(descriptor.received_fd_count, &port.received_fds)) return fail();
    for (uint32_t r = 0; r < descriptor.overflow_count; r++) {
      port.overflow.emplace_back();
      if (!read_record(&reader, &port.overflow.back())) return fail();
      // (A kFds record is never queued: it is written with the record whose fds it sends.)
      if (port.overflow.back().type == RecordType::kFds) return fail();
    }
    for (uint32_t r = 0; r < descriptor.unread_count; r++) {
      port.unread.emplace_back();
      if (!read_record(&reader, &port.unread.back())) return fail();
      // A read record is whole: it carries every fd it names, and is a message, or the fds
      // read for a record not yet published (kFds, empty).
      const PendingRecord& record = port.unread.back();
      bool fds_ahead = record.type == RecordType::kFds && record.payload.empty();
      if ((record.type != RecordType::kMessage && !fds_ahead) ||
          record.fds.size() != record.fd_count) {
        return fail();
      }
    }
  }
  if (!reader.done()) return fail();
  fds->erase(fds->begin(), fds->begin() + next_fd);
  return true;
}

}  // namespace crossport
