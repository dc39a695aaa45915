// One side of a channel: the shared segment, the unix socket to the other side, and the
// protocol between them (wake-ups, fds, overflow, close). Knows nothing of JavaScript.
//
// Sending: a record goes straight into the ring when it fits and nothing waits before it.
// Otherwise it joins an ordered overflow queue, flushed as the consumer frees room (it wakes us
// through the socket when we flagged that we wait). A large message goes into the large ring,
// announced by a kLarge record in the small one; one too large for that goes out of band: a
// sealed memory object whose fd travels with the record.
//
// File descriptors travel over the socket (SCM_RIGHTS), one packet of at most
// os::kMaxFdsPerPacket just before the record that names them is published, once that record
// has room in the ring (more fds go ahead in kFds records, a packet each). The receiver takes
// fds off the socket only for records: those it reads, and (to reach the wake-ups queued behind
// them) up to kMaxReadAheadFds for records published or about to be. The rest wait in the
// kernel's socket buffer, which pushes back on the sender (it queues). So a busy receiver never
// holds more than that, however many fds are in flight, and a peer that sends fds no record
// claims is told apart: with nothing published, an honest peer has at most one packet of fds
// waiting for its record.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "os.h"
#include "ring.h"
#include "segment.h"

namespace crossport {

// A record that could not be written yet. A kMessage whose payload exceeds the small ring's
// limit goes to the large ring when written; a kLarge one is the announcement of a payload
// already in the large ring.
struct PendingRecord {
  RecordType type;
  uint16_t fd_count;          // the number of fds the record carries in all
  std::vector<uint8_t> payload;
  // Owned; fds[0, fds_sent) already went out over the socket (and are closed here), named by
  // kFds records already published.
  std::vector<int> fds;
  size_t fds_sent = 0;
  uint64_t prefix = 0;        // of a message: the part the receiver parses (0: all of it)
};

// A record taken from the ring, with its payload copied out (or mapped, when out of band).
class IncomingRecord {
 public:
  IncomingRecord() = default;
  ~IncomingRecord();
  IncomingRecord(const IncomingRecord&) = delete;
  IncomingRecord& operator=(const IncomingRecord&) = delete;

  RecordType type = RecordType::kMessage;
  std::vector<int> fds;  // owned: fds of handles and ports named by the message
  // The prefix of the payload: private memory, safe to parse.
  const uint8_t* data() const { return mapped_ != nullptr ? mapped_ : copy_.data(); }
  size_t size() const { return mapped_ != nullptr ? mapped_size_ : copy_.size(); }
  // The rest of a large message (its sections, see message.h), left where it is in the large
  // ring: memory the peer can still write, to be copied (never parsed) before any JavaScript
  // runs, then given back with ReleaseBulk(). nullptr when the prefix is all of the payload.
  const uint8_t* bulk() const { return bulk_; }
  size_t bulk_size() const { return bulk_size_; }
  uint64_t total_size() const { return size() + bulk_size_; }
  // Gives the bulk's room in the ring back to the peer.
  void ReleaseBulk();
  // Copies the bulk after the prefix and releases it: the record then stands alone.
  void KeepBulk();
  void Swap(IncomingRecord* other);

 private:
  friend class Link;
  std::vector<uint8_t> copy_;
  uint8_t* mapped_ = nullptr;
  size_t mapped_size_ = 0;
  const uint8_t* bulk_ = nullptr;
  size_t bulk_size_ = 0;
  Ring* lender_ = nullptr;  // the ring whose current record holds the bulk
};

// What a port carries with it when it moves to another process (see message.h).
struct LinkState {
  int segment_fd = -1;
  int socket_fd = -1;
  int side = 0;
  std::vector<int> received_fds;           // read from the socket, not yet claimed by a record
  std::deque<PendingRecord> overflow;      // records not yet written
  // Records read but not delivered (whole, fds included). A kFds record among them holds the
  // fds read for a record not yet published.
  std::vector<PendingRecord> unread;
};

class LinkClient {
 public:
  virtual ~LinkClient() = default;
  // The socket woke us: records may be waiting, or room to write appeared, or the peer left.
  virtual void OnLinkEvent() = 0;
};

enum class NextStatus { kEmpty, kRecord, kBroken };

class Link {
 public:
  // Takes ownership of `segment` and `socket_fd`. `client` is told of socket events.
  Link(std::unique_ptr<Segment> segment, int socket_fd, int side, uv_loop_t* loop,
       LinkClient* client);
  // Rebuilds a link from the state another process (or port) handed over.
  static Link* FromState(LinkState* state, uv_loop_t* loop, LinkClient* client,
                         os::SystemError* err);
  // Closes the poll handle; the Link deletes itself when libuv is done with it.
  void Destroy();

  void set_client(LinkClient* client) { client_ = client; }
  bool has_client() const { return client_ != nullptr; }
  int side() const { return side_; }
  bool broken() const { return broken_; }
  bool peer_gone() const { return peer_gone_; }
  bool has_overflow() const { return !overflow_.empty(); }
  // Bytes of posted messages this process still holds (queued, not yet in shared memory).
  uint64_t queued_bytes() const { return queued_bytes_; }
  // True once after the queue emptied (it had held something).
  bool TakeDrained() {
    bool drained = drained_;
    drained_ = false;
    return drained;
  }

  // Queues or writes a record whose payload is the `count` spans one after the other, of which
  // the first `prefix_count` are the part the receiver parses (see message.h). Takes the fds.
  // Returns false when the link is broken (the peer is gone or misbehaved).
  bool Send(RecordType type, const os::Span* spans, size_t count, size_t prefix_count,
            std::vector<int>&& fds, os::SystemError* err);
  // Writes what waits in the overflow queue, as far as room allows.
  void Flush();
  // The process is exiting and the event loop will not run again: writes the overflow queue,
  // blocking while the reader makes room, until it is empty, the peer is gone, or the reader
  // made no room for `stall_ms` (it does not read).
  void FlushBeforeExit(int stall_ms);

  // Reads the next record (payload copied or mapped, fds claimed). kBroken when the peer
  // wrote something that cannot be a record; the link is then beyond repair.
  NextStatus Next(IncomingRecord* record);
  // Takes back a delivered record's buffer for the next record (no allocation per message).
  void Recycle(IncomingRecord* record);
  // Puts a record taken by Next() back in front of everything else, to be read again later
  // (here, or wherever the port moves).
  void Unread(IncomingRecord* record);
  // True when a close record or nothing is next; `close_next` tells which.
  bool PeekClose(bool* close_next);
  // After a batch: wakes a producer that waits for room. Then, if the ring is empty, marks us
  // asleep so the next record wakes us; returns false if a record arrived meanwhile.
  bool FinishBatch();
  // The two halves of FinishBatch.
  void WakeWaitingWriter();
  bool TrySleep();
  // Marks us asleep unconditionally: used while no one reads (each record then wakes us).
  void Sleep();

  void Ref();
  void Unref();
  bool HasRef() const;

  // Hands over everything this side owns; the link is then inert (call Destroy()).
  void Release(LinkState* state);
  // Duplicates the segment and socket fds (for a child process). -1s on failure.
  bool DuplicateFds(int* segment_fd, int* socket_fd, os::SystemError* err);

 private:
  ~Link();
  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnRetry(uv_timer_t* timer);
  // Reads the packets waiting on the socket (wake-ups, end of stream), and fds as long as fewer
  // than `read_ahead` wait for records to claim them; stops (socket_blocked_) at a packet of
  // fds beyond that, which stays in the kernel's buffer.
  void DrainSocket(size_t read_ahead);
  // Reads up to `max_packets` packets in one call, appending their fds to the received ones;
  // *more when that many came (more may wait).
  os::IoResult ReadPackets(size_t max_packets, bool* more);
  // Moves `count` received fds into `into`, reading packets as needed. False when the socket
  // has no more: the peer published a record before its fds, which it never does.
  bool TakeFds(size_t count, std::vector<int>* into);
  size_t held_fds() const { return received_fds_.size() - received_fds_head_; }
  // False (and the link broken) when more fds wait than an honest peer can have in flight with
  // nothing published to claim them.
  bool CheckStrayFds();
  // Writes a queued record (its payload already copied).
  bool WriteRecord(PendingRecord* record);
  // Writes a record whose payload is the `count` spans: its fds beyond one packet in kFds
  // records, then the record, large or small. False when it has to wait (for room in a ring or
  // the socket, or for the kernel to let more fds fly); what was written stays written.
  bool WriteOut(PendingRecord* record, const os::Span* spans, size_t count, uint64_t prefix);
  bool WriteFdChunks(PendingRecord* record);
  // Writes a large payload (`prefix` bytes of it parsed by the receiver) into the large ring;
  // then its announcement, or else turns *record into the announcement still to write. False
  // when the large ring has no room.
  bool WriteLarge(PendingRecord* record, const os::Span* spans, size_t count, uint64_t prefix);
  // Writes a record into the small ring with its last packet of fds, waking the reader if it
  // sleeps.
  bool WriteSmall(PendingRecord* record, const os::Span* spans, size_t count);
  // Room for a payload of `size` in the small ring, or nullptr (then flagged as waiting for it).
  uint8_t* ReserveSmall(uint64_t size);
  // Sends the next `count` (at most a packet) of the record's fds.
  bool SendFdPacket(PendingRecord* record, size_t count);
  void Wake();
  void UpdatePoll();
  void MarkBroken();

  std::unique_ptr<Segment> segment_;
  Ring send_;
  Ring receive_;
  Ring send_large_;
  Ring receive_large_;
  int socket_;
  int side_;
  LinkClient* client_;
  uv_poll_t poll_;
  bool polled_ = false;  // poll_ was initialised
  int armed_events_ = 0;  // what poll_ was last started for (0: stopped)
  // Retries the queue where no socket event will come: while the kernel holds as many of this
  // user's fds in flight as it allows, or while a blocked socket hides the reader's wake-ups.
  uv_timer_t retry_;
  bool retry_armed_ = false;
  int open_handles_ = 0;  // poll_ and retry_, until libuv has closed them
  bool broken_ = false;
  bool peer_gone_ = false;
  bool socket_blocked_ = false;      // the next packet holds fds DrainSocket may not take yet
  bool waiting_for_socket_ = false;  // a packet of fds found the socket buffer full
  bool waiting_for_fd_room_ = false;  // ... or the kernel's limit on fds in flight reached
  void Enqueue(PendingRecord&& record);

  std::deque<PendingRecord> overflow_;
  uint64_t queued_bytes_ = 0;
  bool drained_ = false;
  std::vector<int> received_fds_;
  size_t received_fds_head_ = 0;
  std::vector<int> gathered_fds_;  // of kFds records read: for the next record
  std::deque<std::unique_ptr<IncomingRecord>> unread_;
  std::vector<uint8_t> spare_;  // a delivered record's buffer, kept for the next one
  // Buffers of queued records already written, kept for the next records to queue while the
  // queue lasts (fresh memory costs a page fault per 4 KiB); at most kMaxSparePayloadBytes.
  std::vector<uint8_t> TakeSparePayload(size_t size);
  void KeepSparePayload(std::vector<uint8_t>&& payload);
  std::vector<std::vector<uint8_t>> spare_payloads_;
  size_t spare_payload_bytes_ = 0;
};

// With nothing published, the most fds an honest peer can have waiting for their record: one
// packet, sent just before the record. More is a peer flooding us with fds no record claims.
constexpr size_t kMaxUnclaimedFds = os::kMaxFdsPerPacket;
// The most fds a link takes off its socket ahead of the records that claim them (to reach the
// wake-ups behind them). A record needing more reads them when it is read.
constexpr size_t kMaxReadAheadFds = 4 * os::kMaxFdsPerPacket;
// The most fds one message may carry (its records count them in 16 bits).
constexpr size_t kMaxFdsPerMessage = UINT16_MAX;

}  // namespace crossport
