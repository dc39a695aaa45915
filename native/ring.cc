#include "ring.h"

#include <cstring>

namespace crossport {

bool Ring::ValidCapacity(uint64_t capacity) {
  return capacity >= 4096 && capacity <= (uint64_t{1} << 30) && (capacity & (capacity - 1)) == 0;
}

Ring::Ring(RingControl* control, uint8_t* data, uint64_t capacity, bool producer)
    : control_(control), data_(data), capacity_(capacity) {
  // Start from what shared memory says (a port may have moved here from another process).
  // Either value may be garbage; every later step validates against it.
  position_ = producer ? control_->write_pos.load(std::memory_order_acquire)
                       : control_->read_pos.load(std::memory_order_acquire);
  position_ = AlignRecord(position_);
  peer_position_ = position_;  // producer: no room known yet; consumer: nothing known yet
  if (producer) peer_position_ -= capacity_;
}

uint64_t Ring::FreeSpace() {
  // Acquire: the consumer released read_pos after it finished reading those bytes.
  peer_position_ = control_->read_pos.load(std::memory_order_acquire);
  uint64_t used = position_ - peer_position_;
  if (used > capacity_) {
    corrupt_ = true;
    peer_position_ = position_ - capacity_;  // no room, whatever the peer wrote
    return 0;
  }
  return capacity_ - used;
}

uint8_t* Ring::Reserve(uint32_t length) {
  uint64_t need = sizeof(RecordHeader) + AlignRecord(length);
  if (need > capacity_ / 2) return nullptr;
  uint64_t offset = position_ & (capacity_ - 1);
  uint64_t to_end = capacity_ - offset;
  uint64_t total = need <= to_end ? need : to_end + need;
  if (total > capacity_ - (position_ - peer_position_) && total > FreeSpace()) return nullptr;
  if (need > to_end) {
    RecordHeader pad{static_cast<uint32_t>(to_end - sizeof(RecordHeader)),
                     static_cast<uint16_t>(RecordType::kPadding), 0};
    memcpy(data_ + offset, &pad, sizeof pad);
    offset = 0;
  }
  pending_at_ = offset;
  pending_end_ = position_ + total;
  pending_length_ = length;
  return data_ + offset + sizeof(RecordHeader);
}

bool Ring::Commit(RecordType type, uint16_t fd_count) {
  RecordHeader header{pending_length_, static_cast<uint16_t>(type), fd_count};
  memcpy(data_ + pending_at_, &header, sizeof header);
  position_ = pending_end_;
  // Release: the consumer that acquires write_pos sees the header and payload.
  control_->write_pos.store(position_, std::memory_order_release);
  // Store-load barrier against the consumer's PrepareSleep (its flag store, then its
  // write_pos load): one of us sees the other's store, so no wake-up is lost.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (control_->reader_asleep.load(std::memory_order_relaxed) == 0) return false;
  // Exchange so that only one wake-up is sent per sleep.
  return control_->reader_asleep.exchange(0, std::memory_order_relaxed) != 0;
}

void Ring::MarkWriterWaiting() {
  control_->writer_waiting.store(1, std::memory_order_relaxed);
  // Store-load barrier against the consumer's TakeWriterWaiting (read_pos store, then flag
  // load): either it sees the flag, or our next Reserve sees its read_pos.
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

ReadStatus Ring::Peek(RecordView* view) {
  for (;;) {
    // Acquire: pairs with the producer's release of write_pos, so the record bytes are visible.
    if (peer_position_ == position_) {
      peer_position_ = control_->write_pos.load(std::memory_order_acquire);
      if (peer_position_ == position_) return ReadStatus::kEmpty;
    }
    uint64_t written = peer_position_;
    uint64_t available = written - position_;
    if (available > capacity_ || available < sizeof(RecordHeader)) {
      corrupt_ = true;
      return ReadStatus::kCorrupt;
    }
    uint64_t offset = position_ & (capacity_ - 1);
    uint64_t to_end = capacity_ - offset;  // >= 8: positions stay 8-aligned
    RecordHeader header;
    memcpy(&header, data_ + offset, sizeof header);  // read once, then validate the copy
    uint64_t total = sizeof(RecordHeader) + AlignRecord(header.length);
    if (total > to_end || total > available) {
      corrupt_ = true;
      return ReadStatus::kCorrupt;
    }
    RecordType type = static_cast<RecordType>(header.type);
    if (type == RecordType::kPadding) {
      if (total != to_end) {
        corrupt_ = true;
        return ReadStatus::kCorrupt;
      }
      position_ += total;
      continue;
    }
    if (type != RecordType::kMessage && type != RecordType::kOutOfBand &&
        type != RecordType::kClose && type != RecordType::kLarge && type != RecordType::kFds) {
      corrupt_ = true;
      return ReadStatus::kCorrupt;
    }
    view->type = type;
    view->fd_count = header.fd_count;
    view->payload = data_ + offset + sizeof(RecordHeader);
    view->length = header.length;
    peeked_end_ = position_ + total;
    return ReadStatus::kRecord;
  }
}

void Ring::Consume() {
  position_ = peeked_end_;
  // Release: the producer may reuse these bytes only after we are done reading them.
  control_->read_pos.store(position_, std::memory_order_release);
}

bool Ring::PrepareSleep() {
  control_->reader_asleep.store(1, std::memory_order_relaxed);
  // Store-load barrier against the producer's Commit (write_pos store, then flag load).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (control_->write_pos.load(std::memory_order_acquire) == position_) return true;
  control_->reader_asleep.store(0, std::memory_order_relaxed);
  return false;
}

void Ring::MarkAsleep() {
  control_->reader_asleep.store(1, std::memory_order_seq_cst);
}

bool Ring::TakeWriterWaiting() {
  // Store-load barrier against MarkWriterWaiting: our read_pos store precedes this load.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (control_->writer_waiting.load(std::memory_order_relaxed) == 0) return false;
  return control_->writer_waiting.exchange(0, std::memory_order_relaxed) != 0;
}

}  // namespace crossport
