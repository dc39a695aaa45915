// A single-producer / single-consumer byte ring in memory shared with another process.
//
// The ring holds records: an 8-byte header {length, type, fd_count} and `length` payload bytes,
// padded to 8. A record never wraps: when it does not fit before the end, the producer writes a
// padding record and starts again at offset 0. Positions grow without bound (64-bit) and are
// reduced modulo the capacity, a power of two.
//
// The peer is not trusted. Each side keeps its own copy of its position and of the capacity; it
// only stores its position to shared memory and only reads the peer's. Every value read from
// shared memory is checked before use, and a record header is copied out once before it is
// checked. A broken invariant reports kCorrupt; nothing here can read or write out of bounds.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace crossport {

// Control block of one direction. The producer and the consumer each own one cache line, so
// their position updates do not bounce a line they both write.
struct RingControl {
  // Producer's line. write_pos: released after the record bytes are written.
  alignas(64) std::atomic<uint64_t> write_pos;
  // Set by a producer that has records waiting for room; the consumer takes it (exchange) after
  // freeing room, and wakes the producer.
  std::atomic<uint32_t> writer_waiting;
  // Consumer's line. read_pos: released after the consumer no longer reads the record.
  alignas(64) std::atomic<uint64_t> read_pos;
  // Set by a consumer before it sleeps; the producer takes it (exchange) after publishing a
  // record into an empty ring, and wakes the consumer.
  std::atomic<uint32_t> reader_asleep;
};
static_assert(sizeof(RingControl) == 128, "two cache lines");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "lock-free across processes");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "lock-free across processes");

enum class RecordType : uint16_t {
  kPadding = 1,     // skip to the start of the ring
  kMessage = 2,     // payload: a message (see message.h)
  kOutOfBand = 3,   // payload: u64 size; the message lives in the first of its fds
  kClose = 4,       // the producer closed its port; nothing follows
  kLarge = 5,       // payload: u64 size, u64 prefix; the message is the next record of the
                    // large ring, of which the receiver parses the first `prefix` bytes
  kFds = 6,         // no payload; its fds belong to the next record that is not kFds (a record
                    // names at most one packet of fds: more go ahead of it in kFds records)
};

struct RecordHeader {
  uint32_t length;
  uint16_t type;
  uint16_t fd_count;
};
static_assert(sizeof(RecordHeader) == 8, "record header layout");

constexpr uint64_t kRecordAlign = 8;
inline uint64_t AlignRecord(uint64_t n) { return (n + kRecordAlign - 1) & ~(kRecordAlign - 1); }

// A record seen by the consumer. `payload` points into shared memory: copy it before parsing.
struct RecordView {
  RecordType type;
  uint16_t fd_count;
  const uint8_t* payload;
  uint32_t length;
};

enum class ReadStatus { kEmpty, kRecord, kCorrupt };

class Ring {
 public:
  static bool ValidCapacity(uint64_t capacity);

  Ring() = default;
  // `data` has `capacity` bytes; `capacity` is the caller's own trusted value.
  Ring(RingControl* control, uint8_t* data, uint64_t capacity, bool producer);

  uint64_t capacity() const { return capacity_; }

  // --- producer ---
  // Reserves room for a payload of `length` bytes and returns where to write it, or nullptr
  // when the ring has no room now (or the peer corrupted the read position: see corrupt()).
  uint8_t* Reserve(uint32_t length);
  // Publishes the reserved record. Returns true when the consumer was asleep and must be woken.
  bool Commit(RecordType type, uint16_t fd_count);
  // Records that the producer waits for room; it must try once more afterwards, since room
  // may have appeared before the consumer could see the flag.
  void MarkWriterWaiting();

  // --- consumer ---
  ReadStatus Peek(RecordView* view);
  void Consume();
  // Announces that the consumer goes to sleep. Returns false (and stays awake) when a record
  // arrived meanwhile.
  bool PrepareSleep();
  // After consuming: true when the producer waits for room and must be woken.
  bool TakeWriterWaiting();
  // Marks the consumer asleep without the check (a port nobody reads: every record wakes it).
  void MarkAsleep();

  bool corrupt() const { return corrupt_; }

 private:
  uint64_t FreeSpace();

  RingControl* control_ = nullptr;
  uint8_t* data_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t position_ = 0;       // our own position: write_pos (producer) or read_pos (consumer)
  // The peer's position as last loaded (read_pos for the producer, write_pos for the consumer).
  // Reloaded only when it no longer suffices, so the peer's cache line is not pulled over for
  // every record. Bytes up to it were published by that (acquire) load, so reusing it is safe.
  uint64_t peer_position_ = 0;
  uint64_t pending_at_ = 0;     // producer: offset of the reserved record
  uint64_t pending_end_ = 0;    // producer: position after the reserved record
  uint32_t pending_length_ = 0;
  uint64_t peeked_end_ = 0;     // consumer: position after the peeked record
  bool corrupt_ = false;
};

}  // namespace crossport
