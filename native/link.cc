#include "link.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>

namespace crossport {

namespace {

// The bytes a queued record holds in this process: an out-of-band record counts its message.
uint64_t QueuedBytes(const PendingRecord& record) {
  uint64_t size = 0;
  if (record.type == RecordType::kOutOfBand && record.payload.size() == sizeof size) {
    memcpy(&size, record.payload.data(), sizeof size);
    return size;
  }
  return record.type == RecordType::kLarge ? 0 : record.payload.size();
}

// Messages above this size leave the small ring for the large one.
uint64_t SmallLimit(const Ring& ring) { return ring.capacity() / 8; }
// Messages above this size go out of band (one copy into a sealed memory object that the
// receiver maps). Ring::Reserve takes a record (header and payload) of up to half the ring,
// so the large ring holds two of any smaller message.
uint64_t LargeLimit(const Ring& large) { return large.capacity() / 2 - sizeof(RecordHeader); }

// The largest out-of-band message a peer may announce (the receiver maps this much).
constexpr uint64_t kMaxOutOfBandSize = uint64_t{1} << 34;

// Queued records this small neither keep nor take spare buffers (see TakeSparePayload).
constexpr size_t kMinSparePayload = 4096;

// How often a queue that no socket event can wake is retried (see Link::retry_).
constexpr int kRetryMs = 10;

// The payload of a kLarge record.
struct LargeAnnouncement {
  uint64_t size;
  uint64_t prefix;
};

uint64_t SizeOf(const os::Span* spans, size_t count) {
  uint64_t size = 0;
  for (size_t i = 0; i < count; i++) size += spans[i].size;
  return size;
}

void CopySpans(uint8_t* at, const os::Span* spans, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (spans[i].size > 0) memcpy(at, spans[i].data, spans[i].size);
    at += spans[i].size;
  }
}

}  // namespace

IncomingRecord::~IncomingRecord() {
  // (A record lives within one call from the event loop: its link, and the ring that lent the
  // bulk, cannot have been deleted yet.)
  ReleaseBulk();
  if (mapped_ != nullptr) os::Unmap(mapped_, mapped_size_);
  for (int fd : fds) os::Close(fd);
}

void IncomingRecord::ReleaseBulk() {
  if (lender_ != nullptr) lender_->Consume();
  lender_ = nullptr;
  bulk_ = nullptr;
  bulk_size_ = 0;
}

void IncomingRecord::KeepBulk() {
  if (bulk_ == nullptr) return;
  copy_.insert(copy_.end(), bulk_, bulk_ + bulk_size_);
  ReleaseBulk();
}

void IncomingRecord::Swap(IncomingRecord* other) {
  std::swap(type, other->type);
  fds.swap(other->fds);
  copy_.swap(other->copy_);
  std::swap(mapped_, other->mapped_);
  std::swap(mapped_size_, other->mapped_size_);
  std::swap(bulk_, other->bulk_);
  std::swap(bulk_size_, other->bulk_size_);
  std::swap(lender_, other->lender_);
}

Link::Link(std::unique_ptr<Segment> segment, int socket_fd, int side, uv_loop_t* loop,
           LinkClient* client)
    : segment_(std::move(segment)),
      send_(segment_->SendRing(side)),
      receive_(segment_->ReceiveRing(side)),
      send_large_(segment_->LargeSendRing(side)),
      receive_large_(segment_->LargeReceiveRing(side)),
      socket_(socket_fd),
      side_(side),
      client_(client) {
  uv_timer_init(loop, &retry_);
  retry_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&retry_));
  open_handles_ = 1;
  // libuv refuses an fd this loop already watches: such a link cannot work and stays broken.
  polled_ = uv_poll_init(loop, &poll_, socket_) == 0;
  if (!polled_) {
    broken_ = true;
    return;
  }
  open_handles_ = 2;
  poll_.data = this;
  // A new port is not referenced: it does not keep the event loop alive until it listens.
  uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
  // Until someone reads, every record wakes us, so a port that starts later finds them all.
  receive_.MarkAsleep();
  UpdatePoll();
}

Link* Link::FromState(LinkState* state, uv_loop_t* loop, LinkClient* client,
                      os::SystemError* err) {
  std::unique_ptr<Segment> segment(Segment::Adopt(state->segment_fd, err));
  if (!segment) return nullptr;
  state->segment_fd = -1;
  auto* link = new Link(std::move(segment), state->socket_fd, state->side, loop, client);
  state->socket_fd = -1;
  link->received_fds_ = std::move(state->received_fds);
  bool unwritable = false;
  for (PendingRecord& record : state->overflow) {
    // What the old owner queued came from another process: a message no ring can take (Send
    // sends those out of band) would wait for ever.
    unwritable = unwritable || (record.type == RecordType::kMessage &&
                                record.payload.size() > LargeLimit(link->send_large_));
    link->Enqueue(std::move(record));
  }
  state->overflow.clear();
  if (unwritable) link->MarkBroken();
  for (PendingRecord& carried : state->unread) {
    auto record = std::make_unique<IncomingRecord>();
    record->type = carried.type;
    record->copy_ = std::move(carried.payload);
    record->fds = std::move(carried.fds);
    link->unread_.push_back(std::move(record));
  }
  state->unread.clear();
  return link;
}

Link::~Link() {
  os::Close(socket_);
  for (size_t i = received_fds_head_; i < received_fds_.size(); i++) os::Close(received_fds_[i]);
  for (int fd : gathered_fds_) os::Close(fd);
  for (PendingRecord& record : overflow_) {
    for (size_t i = record.fds_sent; i < record.fds.size(); i++) os::Close(record.fds[i]);
  }
}

void Link::Destroy() {
  auto closed = [](uv_handle_t* handle) {
    auto* link = static_cast<Link*>(handle->data);
    if (--link->open_handles_ == 0) delete link;
  };
  if (polled_) {
    uv_poll_stop(&poll_);
    armed_events_ = 0;
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), closed);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&retry_), closed);
}

bool Link::Send(RecordType type, const os::Span* spans, size_t count, size_t prefix_count,
                std::vector<int>&& fds, os::SystemError* err) {
  if (broken_ || peer_gone_) {
    for (int fd : fds) os::Close(fd);
    return false;
  }
  uint64_t size = SizeOf(spans, count);
  uint64_t prefix = SizeOf(spans, prefix_count);
  uint64_t oob_size = size;
  os::Span announcement{&oob_size, sizeof oob_size};
  if (size > LargeLimit(send_large_)) {
    int memory = os::CreateSealedCopy(spans, count, err);
    if (memory < 0) {
      for (int fd : fds) os::Close(fd);
      return false;
    }
    fds.insert(fds.begin(), memory);
    type = RecordType::kOutOfBand;
    spans = &announcement;
    count = 1;
    size = sizeof oob_size;
  }
  if (fds.size() > UINT16_MAX) {
    // A record header counts its fds in 16 bits; more would desynchronise the fd stream.
    for (int fd : fds) os::Close(fd);
    *err = os::SystemError{E2BIG, "sendmsg"};
    return false;
  }
  PendingRecord record{type, static_cast<uint16_t>(fds.size()), {}, std::move(fds), 0, prefix};
  if (overflow_.empty()) {
    if (WriteOut(&record, spans, count, prefix)) return true;
    if (send_.corrupt() || send_large_.corrupt()) {
      // (Fds go out only once their record has room: these never went.)
      for (size_t i = record.fds_sent; i < record.fds.size(); i++) os::Close(record.fds[i]);
      MarkBroken();
      return false;
    }
  }
  if (record.type != RecordType::kLarge) {  // else only its announcement is left to write
    record.payload = TakeSparePayload(size);
    for (size_t i = 0; i < count; i++) {
      const auto* bytes = static_cast<const uint8_t*>(spans[i].data);
      record.payload.insert(record.payload.end(), bytes, bytes + spans[i].size);
    }
  }
  Enqueue(std::move(record));
  // (A queue held up by the socket or the kernel's fd limit waits for its event or timer:
  // trying again here would cost a system call per message, for nothing.)
  if (waiting_for_socket_ || waiting_for_fd_room_) {
    UpdatePoll();
  } else {
    Flush();
  }
  return !broken_;
}

void Link::Enqueue(PendingRecord&& record) {
  queued_bytes_ += QueuedBytes(record);
  overflow_.push_back(std::move(record));
}

bool Link::SendFdPacket(PendingRecord* record, size_t count) {
  os::IoResult result = os::SendPacket(socket_, &record->fds[record->fds_sent], count, nullptr);
  waiting_for_socket_ = result == os::IoResult::kWouldBlock;
  waiting_for_fd_room_ = result == os::IoResult::kFdsInFlight;
  if (result == os::IoResult::kOk) {
    // The kernel holds its own reference to each fd in flight; ours can go.
    for (size_t i = 0; i < count; i++) os::Close(record->fds[record->fds_sent + i]);
    record->fds_sent += count;
    return true;
  }
  // Too many fds in flight: room comes as receivers take fds, ours as it reads our records.
  if (waiting_for_fd_room_) send_.MarkWriterWaiting();
  if (result == os::IoResult::kPeerGone || result == os::IoResult::kError) peer_gone_ = true;
  return false;
}

bool Link::WriteRecord(PendingRecord* record) {
  os::Span payload{record->payload.data(), record->payload.size()};
  return WriteOut(record, &payload, 1, record->prefix != 0 ? record->prefix : payload.size);
}

bool Link::WriteOut(PendingRecord* record, const os::Span* spans, size_t count,
                    uint64_t prefix) {
  if (!WriteFdChunks(record)) return false;
  bool large = record->type == RecordType::kMessage && SizeOf(spans, count) > SmallLimit(send_);
  return large ? WriteLarge(record, spans, count, prefix) : WriteSmall(record, spans, count);
}

bool Link::WriteFdChunks(PendingRecord* record) {
  // Each packet goes out only once the record naming it has room, and that record is published
  // at once: the receiver never waits for a record behind fds it has (see CheckStrayFds).
  while (record->fds.size() - record->fds_sent > os::kMaxFdsPerPacket) {
    if (ReserveSmall(0) == nullptr || !SendFdPacket(record, os::kMaxFdsPerPacket)) return false;
    if (send_.Commit(RecordType::kFds, os::kMaxFdsPerPacket)) Wake();
  }
  return true;
}

uint8_t* Link::ReserveSmall(uint64_t size) {
  uint8_t* at = send_.Reserve(static_cast<uint32_t>(size));
  if (at == nullptr && !send_.corrupt()) {
    send_.MarkWriterWaiting();
    at = send_.Reserve(static_cast<uint32_t>(size));
  }
  return at;
}

bool Link::WriteSmall(PendingRecord* record, const os::Span* spans, size_t count) {
  uint8_t* at = ReserveSmall(SizeOf(spans, count));
  if (at == nullptr) return false;
  // The record's own packet of fds (WriteFdChunks sent the others): sent once it has room, and
  // published right after.
  size_t fd_count = record->fds.size() - record->fds_sent;
  if (fd_count > 0 && !SendFdPacket(record, fd_count)) return false;
  CopySpans(at, spans, count);
  if (send_.Commit(record->type, static_cast<uint16_t>(fd_count))) Wake();
  return true;
}

bool Link::WriteLarge(PendingRecord* record, const os::Span* spans, size_t count,
                      uint64_t prefix) {
  if (record->type == RecordType::kMessage) {
    uint64_t size = SizeOf(spans, count);
    uint8_t* at = send_large_.Reserve(static_cast<uint32_t>(size));
    if (at == nullptr) {
      if (send_large_.corrupt()) return false;
      send_large_.MarkWriterWaiting();
      at = send_large_.Reserve(static_cast<uint32_t>(size));
      if (at == nullptr) return false;
    }
    CopySpans(at, spans, count);
    // No wake-up for this ring: the reader comes here when it reads the announcement, which
    // is published after this (release order), so it always finds the payload.
    send_large_.Commit(RecordType::kMessage, 0);
    // The record is now only its announcement (with the fds, if any).
    LargeAnnouncement announcement{size, prefix};
    record->type = RecordType::kLarge;
    record->payload.assign(reinterpret_cast<const uint8_t*>(&announcement),
                           reinterpret_cast<const uint8_t*>(&announcement) + sizeof announcement);
  }
  os::Span payload{record->payload.data(), record->payload.size()};
  return WriteSmall(record, &payload, 1);
}

void Link::Flush() {
  bool had_queue = !overflow_.empty();
  while (!overflow_.empty() && !broken_ && !peer_gone_) {
    PendingRecord& record = overflow_.front();
    uint64_t bytes = QueuedBytes(record);
    if (!WriteRecord(&record)) {
      queued_bytes_ -= bytes - QueuedBytes(record);  // the payload may be in the large ring now
      break;
    }
    queued_bytes_ -= bytes;
    KeepSparePayload(std::move(record.payload));
    overflow_.pop_front();
  }
  if (had_queue && overflow_.empty()) {
    drained_ = true;
    // Spare buffers serve a queue that keeps growing and draining; an empty one needs none.
    spare_payloads_.clear();
    spare_payload_bytes_ = 0;
  }
  if (send_.corrupt() || send_large_.corrupt()) MarkBroken();
  UpdatePoll();
}

std::vector<uint8_t> Link::TakeSparePayload(size_t size) {
  std::vector<uint8_t> payload;
  // (A small record takes fresh memory rather than tie up a large spare buffer.)
  for (size_t i = 0; i < spare_payloads_.size() && size >= kMinSparePayload; i++) {
    if (spare_payloads_[i].capacity() >= size) {
      payload.swap(spare_payloads_[i]);
      spare_payloads_[i].swap(spare_payloads_.back());
      spare_payloads_.pop_back();
      spare_payload_bytes_ -= payload.capacity();
      break;
    }
  }
  payload.reserve(size);
  return payload;
}

void Link::KeepSparePayload(std::vector<uint8_t>&& payload) {
  constexpr size_t kMaxSparePayloadBytes = 16 * 1024 * 1024;
  size_t capacity = payload.capacity();
  if (capacity < kMinSparePayload || spare_payload_bytes_ + capacity > kMaxSparePayloadBytes) {
    return;
  }
  payload.clear();
  spare_payload_bytes_ += payload.capacity();
  spare_payloads_.push_back(std::move(payload));
}

void Link::FlushBeforeExit(int stall_ms) {
  using Clock = std::chrono::steady_clock;
  size_t left = overflow_.size();
  Clock::time_point progress = Clock::now();
  for (;;) {
    Flush();  // marks us waiting for room when it stops short, so the reader wakes us
    if (overflow_.empty() || broken_ || peer_gone_) return;
    Clock::time_point now = Clock::now();
    if (overflow_.size() < left) {
      left = overflow_.size();
      progress = now;
    }
    auto stalled = std::chrono::duration_cast<std::chrono::milliseconds>(now - progress).count();
    if (stalled >= stall_ms) return;
    // No event tells when the kernel lets more fds fly: look again soon.
    int wait = static_cast<int>(stall_ms - stalled);
    if (waiting_for_fd_room_) wait = std::min(wait, kRetryMs);
    os::WaitForSocket(socket_, waiting_for_socket_, wait);
    // The reader's wake-up packets (and its end of stream), behind whatever fds: nothing will
    // read them after us.
    DrainSocket(SIZE_MAX);
  }
}

void Link::Wake() {
  os::IoResult result = os::SendPacket(socket_, nullptr, 0, nullptr);
  // kWouldBlock: the peer has unread packets already, so it will wake anyway.
  if (result == os::IoResult::kPeerGone || result == os::IoResult::kError) peer_gone_ = true;
}

os::IoResult Link::ReadPackets(size_t max_packets, bool* more) {
  // Taken fds are dropped from the front now and then (few are held: see DrainSocket).
  if (received_fds_head_ > 0 &&
      (received_fds_head_ == received_fds_.size() || received_fds_head_ >= kMaxReadAheadFds)) {
    received_fds_.erase(received_fds_.begin(),
                        received_fds_.begin() + static_cast<ptrdiff_t>(received_fds_head_));
    received_fds_head_ = 0;
  }
  os::IoResult result = os::ReceivePackets(socket_, max_packets, &received_fds_, more, nullptr);
  if (result == os::IoResult::kPeerGone || result == os::IoResult::kError) peer_gone_ = true;
  return result;
}

void Link::DrainSocket(size_t read_ahead) {
  if (socket_ < 0) return;
  socket_blocked_ = false;
  for (bool more = true; more && !broken_;) {
    // As many packets in one call as could all carry a full load of fds without holding more
    // than `read_ahead`: a wake-up costs one system call, not a second to learn that nothing
    // else waits (the poll is level-triggered: what arrives later fires it again).
    size_t room = read_ahead > held_fds() ? read_ahead - held_fds() : 0;
    size_t batch = room / os::kMaxFdsPerPacket;
    if (batch == 0) {
      // As many fds wait here as we take ahead of their records: a packet of more stays in the
      // kernel's buffer until a record needs it (TakeFds), which holds back the sender.
      size_t fd_count = 0;
      os::IoResult next = os::PeekPacket(socket_, &fd_count);
      if (next == os::IoResult::kWouldBlock) break;
      if (next == os::IoResult::kOk && fd_count > 0) {
        socket_blocked_ = CheckStrayFds();
        break;
      }
      batch = 1;
    }
    size_t held = held_fds();
    if (ReadPackets(batch, &more) != os::IoResult::kOk) break;
    if (held_fds() > held && !CheckStrayFds()) break;
  }
  UpdatePoll();
}

bool Link::TakeFds(size_t count, std::vector<int>* into) {
  while (held_fds() < count) {
    bool more;
    if (ReadPackets(1, &more) != os::IoResult::kOk) return false;
  }
  auto first = received_fds_.begin() + static_cast<ptrdiff_t>(received_fds_head_);
  into->insert(into->end(), first, first + static_cast<ptrdiff_t>(count));
  received_fds_head_ += count;
  if (socket_blocked_ && held_fds() <= kMaxReadAheadFds / 2) {
    socket_blocked_ = false;  // DrainSocket may take fds ahead again
    UpdatePoll();
  }
  return true;
}

bool Link::CheckStrayFds() {
  if (held_fds() <= kMaxUnclaimedFds) return true;
  RecordView view;
  if (receive_.Peek(&view) != ReadStatus::kEmpty) return true;
  // Nothing published claims them, and an honest peer publishes a record right after its fds.
  MarkBroken();
  return false;
}

void Link::Recycle(IncomingRecord* record) {
  record->ReleaseBulk();
  constexpr size_t kMaxSpare = 16 * 1024 * 1024;
  if (record->copy_.capacity() >= spare_.capacity() && record->copy_.capacity() <= kMaxSpare) {
    record->copy_.swap(spare_);
  }
}

void Link::Unread(IncomingRecord* record) {
  record->KeepBulk();  // it may wait across loop turns, or move
  auto saved = std::make_unique<IncomingRecord>();
  saved->Swap(record);
  unread_.push_front(std::move(saved));
}

NextStatus Link::Next(IncomingRecord* record) {
  RecordView view;
  bool from_ring = false;
  for (;;) {
    if (!unread_.empty()) {
      record->Swap(unread_.front().get());
      unread_.pop_front();
      from_ring = false;
      if (record->type != RecordType::kFds) break;
    } else {
      from_ring = true;
      if (broken_) return NextStatus::kBroken;
      ReadStatus status = receive_.Peek(&view);
      if (status == ReadStatus::kEmpty) {
        return CheckStrayFds() ? NextStatus::kEmpty : NextStatus::kBroken;
      }
      // A record names at most one packet of fds, all sent before it was published: else the
      // peer lied.
      if (status == ReadStatus::kCorrupt || view.fd_count > os::kMaxFdsPerPacket ||
          (view.type == RecordType::kFds && view.length != 0) ||
          !TakeFds(view.fd_count, &record->fds)) {
        MarkBroken();
        return NextStatus::kBroken;
      }
      record->type = view.type;
      if (view.type != RecordType::kFds) break;
      receive_.Consume();
    }
    // A kFds record: fds of the next record, sent ahead of it.
    gathered_fds_.insert(gathered_fds_.end(), record->fds.begin(), record->fds.end());
    record->fds.clear();
    if (gathered_fds_.size() > kMaxFdsPerMessage) {
      MarkBroken();
      return NextStatus::kBroken;
    }
  }
  if (!gathered_fds_.empty()) {
    record->fds.insert(record->fds.begin(), gathered_fds_.begin(), gathered_fds_.end());
    gathered_fds_.clear();
  }
  if (!from_ring) return NextStatus::kRecord;  // read before, and whole
  if (view.type == RecordType::kMessage) {
    record->copy_.swap(spare_);  // no allocation per message: Recycle() gives it back
    record->copy_.assign(view.payload, view.payload + view.length);
  } else if (view.type == RecordType::kLarge) {
    // The payload is the next record of the large ring, published before this announcement.
    LargeAnnouncement announced{0, 0};
    if (view.length == sizeof announced) memcpy(&announced, view.payload, sizeof announced);
    RecordView large;
    if (announced.size == 0 || announced.prefix == 0 || announced.prefix > announced.size ||
        receive_large_.Peek(&large) != ReadStatus::kRecord ||
        large.type != RecordType::kMessage || large.length != announced.size) {
      MarkBroken();
      return NextStatus::kBroken;
    }
    // The prefix is parsed: copied into private memory. The rest stays in the ring, lent to
    // the record until its sections are copied into their ArrayBuffers.
    record->copy_.swap(spare_);
    record->copy_.assign(large.payload, large.payload + announced.prefix);
    record->type = RecordType::kMessage;
    if (announced.prefix < announced.size) {
      record->bulk_ = large.payload + announced.prefix;
      record->bulk_size_ = announced.size - announced.prefix;
      record->lender_ = &receive_large_;
    } else {
      receive_large_.Consume();
    }
  } else if (view.type == RecordType::kOutOfBand) {
    // An unreadable out-of-band message leaves the payload empty: the message then fails to
    // deserialize and the receiver gets 'messageerror', while the link goes on.
    uint64_t size = 0;
    if (view.length == sizeof size) memcpy(&size, view.payload, sizeof size);
    record->type = RecordType::kMessage;
    if (!record->fds.empty()) {
      int memory = record->fds.front();
      record->fds.erase(record->fds.begin());
      // The size we map is the one announced, checked against the object's size once it is
      // sealed (so it cannot change afterwards).
      int64_t actual = os::SealedSize(memory, os::Sealing::kReadOnly);
      if (size > 0 && size <= kMaxOutOfBandSize && actual >= 0 &&
          static_cast<uint64_t>(actual) == size) {
        void* mapped = os::MapShared(memory, size, false, nullptr);
        if (mapped != nullptr) {
          record->mapped_ = static_cast<uint8_t*>(mapped);
          record->mapped_size_ = size;
        }
      }
      os::Close(memory);
    }
  }
  receive_.Consume();
  return NextStatus::kRecord;
}

bool Link::PeekClose(bool* close_next) {
  *close_next = false;
  if (!unread_.empty()) return false;
  RecordView view;
  ReadStatus status = receive_.Peek(&view);
  if (status == ReadStatus::kCorrupt || (status == ReadStatus::kEmpty && !CheckStrayFds())) {
    MarkBroken();
    *close_next = true;
    return true;
  }
  *close_next = status == ReadStatus::kRecord && view.type == RecordType::kClose;
  return status == ReadStatus::kEmpty || *close_next;
}

bool Link::FinishBatch() {
  WakeWaitingWriter();
  return TrySleep();
}

void Link::WakeWaitingWriter() {
  // Both flags are taken (no short-circuit): a writer may wait for either ring.
  bool small = receive_.TakeWriterWaiting();
  bool large = receive_large_.TakeWriterWaiting();
  if (small || large) Wake();
}

bool Link::TrySleep() { return receive_.PrepareSleep(); }

void Link::Sleep() { receive_.MarkAsleep(); }

void Link::Ref() {
  if (polled_) uv_ref(reinterpret_cast<uv_handle_t*>(&poll_));
}

void Link::Unref() {
  if (polled_) uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
}

bool Link::HasRef() const {
  return polled_ && uv_has_ref(reinterpret_cast<const uv_handle_t*>(&poll_));
}

void Link::MarkBroken() {
  broken_ = true;
  UpdatePoll();
}

void Link::UpdatePoll() {
  if (!polled_ || socket_ < 0 || uv_is_closing(reinterpret_cast<uv_handle_t*>(&poll_))) return;
  bool writing = !overflow_.empty() && !peer_gone_ && !broken_;
  // The queue waits for a wake-up from the reader, which a blocked socket hides, or for the
  // kernel to let more fds fly, which no event tells: look again now and then.
  bool retry = writing && (waiting_for_fd_room_ || (socket_blocked_ && !waiting_for_socket_));
  if (retry != retry_armed_) {
    if (retry) {
      uv_timer_start(&retry_, OnRetry, kRetryMs, kRetryMs);
    } else {
      uv_timer_stop(&retry_);
    }
    retry_armed_ = retry;
  }
  if (peer_gone_ || broken_) {
    uv_poll_stop(&poll_);
    armed_events_ = 0;
    return;
  }
  // Writable matters only while a packet of fds waits for room in the socket. Blocked at fds
  // it may not take yet, the link cannot see the end of the stream behind them: it asks the
  // poll to tell (UV_DISCONNECT) instead of reading.
  int events = (socket_blocked_ ? UV_DISCONNECT : UV_READABLE) |
               (writing && waiting_for_socket_ ? UV_WRITABLE : 0);
  // Re-arming costs epoll_ctl calls (libuv takes the fd out of epoll and puts it back): a
  // producer whose messages queued paid them per message, 15% of its time (perf, small case).
  if (events == armed_events_) return;
  uv_poll_start(&poll_, events, OnPoll);
  armed_events_ = events;
}

void Link::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* link = static_cast<Link*>(handle->data);
  if (status < 0 || (events & UV_DISCONNECT) != 0) {
    // (Records and fds already in the ring and the socket can still be read.)
    link->peer_gone_ = true;
    link->UpdatePoll();
  } else {
    link->DrainSocket(kMaxReadAheadFds);
    if (!link->overflow_.empty()) link->Flush();
  }
  link->client_->OnLinkEvent();
}

void Link::OnRetry(uv_timer_t* timer) {
  auto* link = static_cast<Link*>(timer->data);
  if (link->socket_blocked_) link->DrainSocket(kMaxReadAheadFds);  // the fds may be claimed now
  link->Flush();
  link->client_->OnLinkEvent();
}

void Link::Release(LinkState* state) {
  if (polled_) uv_poll_stop(&poll_);
  armed_events_ = 0;
  uv_timer_stop(&retry_);
  retry_armed_ = false;
  state->side = side_;
  state->socket_fd = socket_;
  socket_ = -1;
  state->segment_fd = segment_->ReleaseFd();
  state->received_fds.assign(received_fds_.begin() + received_fds_head_, received_fds_.end());
  received_fds_.clear();
  received_fds_head_ = 0;
  state->overflow = std::move(overflow_);
  overflow_.clear();
  queued_bytes_ = 0;
  for (std::unique_ptr<IncomingRecord>& record : unread_) {
    PendingRecord carried{record->type, static_cast<uint16_t>(record->fds.size()), {}, {}, 0};
    carried.payload.assign(record->data(), record->data() + record->size());
    carried.fds = std::move(record->fds);
    record->fds.clear();
    state->unread.push_back(std::move(carried));
  }
  unread_.clear();
  if (!gathered_fds_.empty()) {
    // Fds read for a record not yet published travel as a kFds record read before the others.
    PendingRecord gathered{RecordType::kFds, static_cast<uint16_t>(gathered_fds_.size()), {}, {}, 0};
    gathered.fds.swap(gathered_fds_);
    state->unread.insert(state->unread.begin(), std::move(gathered));
  }
}

bool Link::DuplicateFds(int* segment_fd, int* socket_fd, os::SystemError* err) {
  *segment_fd = os::Duplicate(segment_->fd(), err);
  *socket_fd = *segment_fd < 0 ? -1 : os::Duplicate(socket_, err);
  if (*socket_fd < 0) {
    os::Close(*segment_fd);
    *segment_fd = -1;
    return false;
  }
  return true;
}

}  // namespace crossport
