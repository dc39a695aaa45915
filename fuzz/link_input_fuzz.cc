// Fuzz target for native/link.cc: one side of a real channel (a memfd segment and a unix socket
// pair, real fds) facing a hostile peer that writes records of any type and fd count into the
// ring (kLarge announcements that lie, out-of-band records, kFds chunks), sends packets of fds
// that no record claims or that lie about their count, scribbles over the segment, and leaves.
// Our side does what a port does: reads records (Link::Next) and decodes their heads as
// PortHandle::Decode does (ports rebuilt with Link::FromState), puts records back (Unread),
// reacts to socket events and timers (fake_uv.cc stands in for libuv), sends messages with many
// fds (the peer checks they come one packet at a time, each just before its record), moves to
// another owner (Release, a message head, FromState), and runs out of fds (RLIMIT_NOFILE).
//
// Checked: every fd a record hands out is open (or -1 for one the kernel could not install);
// nothing is closed twice (close() is wrapped: EBADF aborts); after each input every fd, memory
// mapping and handle is gone; our side never has more than one packet of fds in flight ahead
// of its record.
//
// Built by scripts/fuzz.sh with libFuzzer (clang), or with fuzz/standalone_driver.cc.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "../native/link.h"
#include "../native/message.h"
#include "../native/os.h"
#include "../native/ring.h"
#include "../native/segment.h"
#include "fake_uv.h"
#include "fuzz_input.h"

extern "C" int __real_close(int fd);

// Every close of the addon's code comes here (-Wl,--wrap=close): closing an fd that is not open
// means it was closed twice (or never ours), which with real fds can close someone else's.
extern "C" int __wrap_close(int fd) {
  int result = __real_close(fd);
  if (result != 0 && errno == EBADF) {
    fprintf(stderr, "close(%d): EBADF (closed twice?)\n", fd);
    abort();
  }
  return result;
}

namespace {

using crossport::IncomingRecord;
using crossport::Link;
using crossport::LinkState;
using crossport::NextStatus;
using crossport::ReadStatus;
using crossport::RecordType;
using crossport::RecordView;
using crossport::Ring;
using crossport::RingControl;

constexpr uint64_t kSmall = 4096;  // the smallest rings: every size class is reachable
constexpr uint64_t kLarge = 8192;

// An input makes no more fds than this (so that it stays within RLIMIT_NOFILE).
constexpr int kMaxFd = 4096;

// A copy of `fd`, or -1 (also past kMaxFd).
int Copy(int fd) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy >= kMaxFd) {
    __real_close(copy);
    return -1;
  }
  return copy;
}

int CountOpenFds() {
  int count = 0;
  DIR* dir = opendir("/proc/self/fd");
  CHECK(dir != nullptr);
  while (dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
  closedir(dir);
  return count - 1;  // the directory's own fd
}

class Client : public crossport::LinkClient {
 public:
  void OnLinkEvent() override {}
};

// The peer's side of the channel, written by hand.
class Peer {
 public:
  Peer(int segment_fd, int socket) : socket_(socket) {
    size_ = crossport::kDataOffset + 2 * (kSmall + kLarge);
    base_ = static_cast<uint8_t*>(crossport::os::MapShared(segment_fd, size_, true, nullptr));
    CHECK(base_ != nullptr);
    __real_close(segment_fd);
    auto* control = reinterpret_cast<RingControl*>(base_ + crossport::kRingsOffset);
    uint8_t* data = base_ + crossport::kDataOffset;
    // We are side 0: the peer (side 1) produces rings 1 and 3 and consumes 0 and 2.
    send_ = Ring(&control[1], data + kSmall, kSmall, true);
    send_large_ = Ring(&control[3], data + 2 * kSmall + kLarge, kLarge, true);
    receive_ = Ring(&control[0], data, kSmall, false);
    receive_large_ = Ring(&control[2], data + 2 * kSmall, kLarge, false);
    null_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(null_ >= 0);
  }
  ~Peer() {
    crossport::os::Unmap(base_, size_);
    for (int fd : received_) {
      if (fd >= 0) __real_close(fd);
    }
    if (socket_ >= 0) __real_close(socket_);
    __real_close(null_);
  }

  bool gone() const { return socket_ < 0; }
  int null_fd() const { return null_; }
  uint8_t* base() { return base_; }
  size_t size() const { return size_; }

  void Publish(RecordType type, uint16_t fd_count, const uint8_t* bytes, size_t n) {
    uint8_t* at = send_.Reserve(static_cast<uint32_t>(n));
    if (at == nullptr) return;
    if (n > 0) memcpy(at, bytes, n);
    if (send_.Commit(type, fd_count)) Packet(0, 0, 0);
  }

  void PublishLarge(uint64_t announced_size, uint64_t prefix, const uint8_t* bytes, size_t n) {
    uint8_t* at = send_large_.Reserve(static_cast<uint32_t>(n));
    if (at == nullptr) return;
    memcpy(at, bytes, n);
    send_large_.Commit(RecordType::kMessage, 0);
    uint64_t announcement[2] = {announced_size, prefix};
    Publish(RecordType::kLarge, 0, reinterpret_cast<const uint8_t*>(announcement), sizeof announcement);
  }

  // An fd of `kind` (0: /dev/null, 1: a sealed memory object of `size` bytes, 2: one not
  // sealed, 3: a segment, 4: a socket), or -1.
  int MakeFd(int kind, uint32_t size) {
    int fd = NewFd(kind, size);
    if (fd >= kMaxFd) {
      __real_close(fd);
      return -1;
    }
    return fd;
  }

  // A packet of `count` copies of an fd of `kind` (see MakeFd) whose byte says `declared`.
  void Packet(int count, int kind, uint8_t declared, uint32_t size = 0) {
    if (gone()) return;
    int fd = kind == 0 ? null_ : MakeFd(kind, size % 65536);
    if (fd < 0) return;
    std::vector<int> fds(static_cast<size_t>(count), fd);
    SendFds(fds.data(), fds.size(), declared);
    if (fd != null_) __real_close(fd);
  }

  void SendFds(const int* fds, size_t count, int declared = -1) {
    if (gone()) return;
    unsigned char byte = static_cast<unsigned char>(declared < 0 ? count : declared);
    struct iovec iov = {&byte, 1};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253)];
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (count > 0) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
      struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
      memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * count);
    }
    sendmsg(socket_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  // Sends `fds` (taking them) as an honest sender does: a packet of at most 64 just before each
  // record, the first ones in kFds records; the last packet goes with the record `type`
  // carrying `bytes`. With `lie`, the record claims one more fd than came.
  void PublishWithFds(RecordType type, std::vector<int> fds, const uint8_t* bytes, size_t n, bool lie) {
    size_t at = 0;
    while (fds.size() - at > crossport::os::kMaxFdsPerPacket) {
      SendFds(&fds[at], crossport::os::kMaxFdsPerPacket);
      Publish(RecordType::kFds, crossport::os::kMaxFdsPerPacket, nullptr, 0);
      at += crossport::os::kMaxFdsPerPacket;
    }
    size_t last = fds.size() - at;
    if (last > 0) SendFds(&fds[at], last);
    Publish(type, static_cast<uint16_t>(last + (lie ? 1 : 0)), bytes, n);
    for (int fd : fds) __real_close(fd);
  }

  void Leave() {
    if (socket_ >= 0) __real_close(socket_);
    socket_ = -1;
  }

  // Reads what our side sent, as an honest receiver. Unless `scribbled` (the peer wrote over
  // the ring we write, so that what it reads is not what we wrote), checks our side's promise:
  // each record's fds are in the socket before the record, and with nothing left to read no
  // fd waits for a record.
  void ReadOurs(bool scribbled) {
    if (gone()) return;
    ReadStatus status;
    for (;;) {
      DrainSocket();
      RecordView view;
      status = receive_.Peek(&view);
      if (status != ReadStatus::kRecord) break;
      if (scribbled && (view.fd_count > received_.size() || view.type == RecordType::kLarge)) break;
      CHECK(view.fd_count <= crossport::os::kMaxFdsPerPacket);
      CHECK(received_.size() >= view.fd_count);
      for (uint16_t i = 0; i < view.fd_count; i++) {
        if (received_[i] >= 0) __real_close(received_[i]);
      }
      received_.erase(received_.begin(), received_.begin() + view.fd_count);
      if (view.type == RecordType::kLarge) {
        RecordView large;
        CHECK(receive_large_.Peek(&large) == ReadStatus::kRecord);
        receive_large_.Consume();
      }
      receive_.Consume();
    }
    DrainSocket();
    CHECK(scribbled || (status == ReadStatus::kEmpty && received_.empty()));
    // Room was made: wake our side if it waits for it.
    if (receive_.TakeWriterWaiting() || receive_large_.TakeWriterWaiting()) Packet(0, 0, 0);
  }

 private:
  int NewFd(int kind, uint32_t size) {
    crossport::os::SystemError error{0, nullptr};
    switch (kind) {
      case 1: {
        std::vector<uint8_t> zeros(size);
        crossport::os::Span span{zeros.data(), zeros.size()};
        return crossport::os::CreateSealedCopy(&span, 1, nullptr);
      }
      case 2:
        return crossport::os::CreateSharedMemory(size, nullptr);
      case 3: {
        std::unique_ptr<crossport::Segment> segment(crossport::Segment::Create(kSmall, kLarge, &error));
        return segment ? dup(segment->fd()) : -1;
      }
      case 4: {
        int pair[2];
        if (!crossport::os::SocketPair(pair, &error)) return -1;
        __real_close(pair[1]);
        return pair[0];
      }
      default:
        return dup(null_);
    }
  }

  void DrainSocket() {
    // (Out of fds, the kernel drops some: ReceivePacket counts them as -1.)
    while (crossport::os::ReceivePacket(socket_, &received_, nullptr) == crossport::os::IoResult::kOk) {
    }
  }

  int socket_;
  int null_;
  uint8_t* base_;
  size_t size_;
  Ring send_, send_large_, receive_, receive_large_;
  std::vector<int> received_;
};

// What PortHandle::Decode does with a record, short of V8: the head decoded against its fds,
// the ports it carries rebuilt as links (then closed), everything else closed.
void DecodeAsPort(IncomingRecord* record, uv_loop_t* loop, Client* client) {
  std::vector<crossport::Handle> handles;
  std::vector<crossport::BufferChunks> buffers;
  std::vector<LinkState> states;
  crossport::MessageLayout layout;
  if (crossport::DecodeMessageHead(record->data(), record->size(), record->total_size(),
                                   &record->fds, &handles, &buffers, &states, &layout)) {
    for (crossport::Handle& handle : handles) crossport::os::Close(handle.fd);
    for (crossport::BufferChunks& chunks : buffers) {
      // As AdoptIncoming maps them: whatever the peer sent, every page mapped reads.
      uint64_t size = 0;
      size_t mapped_length = 0;
      crossport::os::SystemError error{0, nullptr};
      void* base = crossport::os::MapSealedChunks(chunks.data(), chunks.size(), uint64_t{1} << 34,
                                                  &size, &mapped_length, &error);
      if (base != nullptr) {
        volatile uint8_t sum = 0;
        for (uint64_t at = 0; at < size; at += 4096) sum += static_cast<const uint8_t*>(base)[at];
        sum += static_cast<const uint8_t*>(base)[size - 1];
        crossport::os::Unmap(base, mapped_length);
      }
      for (int fd : chunks) crossport::os::Close(fd);
    }
    for (LinkState& state : states) {
      crossport::os::SystemError error{0, nullptr};
      Link* port = Link::FromState(&state, loop, client, &error);
      if (port != nullptr) port->Destroy();
      crossport::CloseLinkState(&state);
    }
  }
  record->ReleaseBulk();
}

enum Op : uint8_t {
  kPeerRecord,    // the peer publishes a record of any type and fd count
  kPeerLarge,     // a payload in the large ring and its announcement (which may lie)
  kPeerFds,       // a packet of fds, its byte saying any count
  kPeerScribble,  // bytes anywhere in the segment (positions, flags, headers)
  kLoopTurn,      // socket events (and maybe the timer) reach our side
  kNext,          // we read a record and decode it, drop it or put it back
  kSend,          // we send a message with fds; the peer reads it all and checks
  kTransfer,      // our side moves: Release, a message head, FromState
  kPeerLeave,     // the peer closes its end
  kOutOfFds,      // our next read happens with no fd to spare (EMFILE)
  kPeerMessage,   // a well-formed message carrying handles, buffers and ports (real ones)
  kPeerOutOfBand, // an out-of-band record and its memory object (whose size may lie)
  kSendMany,      // we send many messages with an fd each: the socket fills
  kStopped,       // what a port nobody reads does on an event (PeekClose), or at exit
  kOpCount,
};

// A message head as PortHandle::Post encodes it, for handles, buffers and ports whose fds are
// real (ports: a real segment and socket, fds they had received, records they queued or read),
// followed by `body`; its fds go into *fds.
std::vector<uint8_t> PeerMessage(Input* in, Peer* peer, std::vector<int>* fds) {
  std::vector<crossport::Handle> handles(in->U8() % 4);
  for (crossport::Handle& handle : handles) {
    handle = crossport::Handle{static_cast<crossport::HandleKind>(1 + in->U8() % 6), peer->MakeFd(0, 0)};
  }
  // Transferred buffers: 1 to 3 chunks each, sealed or not, of sizes that may map end to end
  // (2 MiB) or not.
  std::vector<crossport::BufferChunks> buffers(in->U8() % 3);
  for (crossport::BufferChunks& chunks : buffers) {
    for (int i = 1 + in->U8() % 3; i > 0; i--) {
      uint32_t size = in->U8() % 4 == 0 ? 2 * 1024 * 1024 : in->Get<uint16_t>() % 8192;
      chunks.push_back(peer->MakeFd(1 + in->U8() % 2, size));
    }
  }
  std::vector<LinkState> ports(in->U8() % 3);
  for (LinkState& port : ports) {
    port.side = in->U8() % 2;
    port.segment_fd = peer->MakeFd(in->U8() % 8 == 0 ? 0 : 3, 0);
    port.socket_fd = peer->MakeFd(4, 0);
    for (int i = in->U8() % 70; i > 0; i--) port.received_fds.push_back(peer->MakeFd(0, 0));
    for (int r = in->U8() % 4; r > 0; r--) {
      uint16_t count = in->U8() % 70;
      crossport::PendingRecord record{static_cast<RecordType>(2 + in->U8() % 4), count,
                                      std::vector<uint8_t>(in->U8(), 0x42), {}, 0};
      for (uint16_t i = in->U8() % (count + 1); i > 0; i--) record.fds.push_back(peer->MakeFd(0, 0));
      port.overflow.push_back(std::move(record));
    }
    for (int r = in->U8() % 3; r > 0; r--) {
      bool fds_ahead = in->U8() % 4 == 0;
      crossport::PendingRecord record{fds_ahead ? RecordType::kFds : RecordType::kMessage, 0,
                                      std::vector<uint8_t>(fds_ahead ? 0 : in->U8(), 0x17), {}, 0};
      for (int i = in->U8() % 70; i > 0; i--) record.fds.push_back(peer->MakeFd(0, 0));
      record.fd_count = static_cast<uint16_t>(record.fds.size());
      port.unread.push_back(std::move(record));
    }
  }
  size_t n = in->U8();
  const uint8_t* body = in->Take(&n);
  std::vector<uint8_t> payload =
      crossport::EncodeMessageHead(&handles, &buffers, &ports, {}, n, fds);
  payload.insert(payload.end(), body, body + n);
  return payload;
}

void Run(Input* in) {
  static uv_loop_t loop;  // only an address: fake_uv never runs it
  Client client;
  crossport::os::SystemError error{0, nullptr};
  std::unique_ptr<crossport::Segment> segment(crossport::Segment::Create(kSmall, kLarge, &error));
  CHECK(segment);
  int peer_segment = dup(segment->fd());
  int sockets[2];
  CHECK(crossport::os::SocketPair(sockets, &error));
  Peer peer(peer_segment, sockets[1]);
  Link* link = new Link(std::move(segment), sockets[0], 0, &loop, &client);
  bool out_of_fds = false;
  bool scribbled = false;
  struct rlimit saved;
  CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  for (int steps = 0; !in->empty() && steps < 128; steps++) {
    bool tight = out_of_fds;  // for this step only
    out_of_fds = false;
    if (tight) {
      struct rlimit limit = saved;
      limit.rlim_cur = static_cast<rlim_t>(CountOpenFds() + in->U8() % 4);
      setrlimit(RLIMIT_NOFILE, &limit);
    }
    switch (in->U8() % kOpCount) {
      case kPeerRecord: {
        auto type = static_cast<RecordType>(1 + in->U8() % 7);
        uint16_t fd_count = in->U8() % 72;
        size_t n = in->U8() % 2 == 0 ? in->U8() : in->Get<uint16_t>() % 1024;
        const uint8_t* bytes = in->Take(&n);
        peer.Publish(type, fd_count, bytes, n);
        break;
      }
      case kPeerLarge: {
        size_t n = in->Get<uint16_t>() % 4096;
        uint64_t size = in->U8() % 2 == 0 ? n : in->Get<uint16_t>();
        uint8_t choice = in->U8() % 3;
        uint64_t prefix = choice == 0 ? n : choice == 1 ? n / 2 : in->Get<uint16_t>();
        const uint8_t* bytes = in->Take(&n);
        peer.PublishLarge(size, prefix, bytes, n);
        break;
      }
      case kPeerFds: {
        int count = in->U8() % 80;
        int kind = in->U8() % 3;
        uint8_t declared = in->U8() % 2 == 0 ? static_cast<uint8_t>(count) : in->U8();
        peer.Packet(count, kind, declared, in->Get<uint16_t>());
        break;
      }
      case kPeerScribble: {
        size_t offset = in->Get<uint16_t>() % peer.size();
        size_t n = std::min<size_t>(in->U8() % 16, peer.size() - offset);
        const uint8_t* bytes = in->Take(&n);
        memcpy(peer.base() + offset, bytes, n);
        scribbled = true;
        break;
      }
      case kLoopTurn:
        fake_uv::RunLoopTurn(in->U8() % 2 == 0);
        break;
      case kNext: {
        if (link == nullptr) break;
        uint8_t then = in->U8();
        IncomingRecord record;
        if (link->Next(&record) != NextStatus::kRecord) break;
        for (int fd : record.fds) CHECK(fd == -1 || fcntl(fd, F_GETFD) != -1);
        if (then % 3 == 0 && record.type == RecordType::kMessage) {
          link->Unread(&record);  // (as a port does with a message it cannot deliver yet)
        } else if (then % 3 == 1) {
          DecodeAsPort(&record, &loop, &client);
          link->Recycle(&record);
        }
        break;
      }
      case kSend: {
        if (link == nullptr) break;
        size_t fd_count = in->U8() % 2 == 0 ? in->U8() % 8 : in->Get<uint16_t>() % 300;
        size_t size = in->U8() % 2 == 0 ? in->U8() : in->Get<uint16_t>() % 9000;
        std::vector<uint8_t> payload(size, in->U8());
        std::vector<int> fds;
        for (size_t i = 0; i < fd_count; i++) {
          int fd = Copy(peer.null_fd());
          if (fd >= 0) fds.push_back(fd);
        }
        crossport::os::Span span{payload.data(), payload.size()};
        link->Send(RecordType::kMessage, &span, 1, 1, std::move(fds), &error);
        if (in->U8() % 2 == 0) {
          peer.ReadOurs(scribbled);
          fake_uv::RunLoopTurn(true);  // (its wake-up lets our queue go on)
        }
        break;
      }
      case kTransfer: {
        if (link == nullptr) break;
        LinkState state;
        link->Release(&state);
        link->Destroy();
        link = nullptr;
        if (in->U8() % 2 == 0) {
          // Through a message head, as a port in a message travels.
          std::vector<crossport::Handle> handles;
          std::vector<crossport::BufferChunks> buffers;
          std::vector<int> fds;
          std::vector<LinkState> ports(1);
          ports[0] = std::move(state);
          std::vector<uint8_t> head =
              crossport::EncodeMessageHead(&handles, &buffers, &ports, {}, 0, &fds);
          crossport::MessageLayout layout;
          ports.clear();
          CHECK(crossport::DecodeMessageHead(head.data(), head.size(), head.size(), &fds,
                                             &handles, &buffers, &ports, &layout));
          CHECK(fds.empty() && ports.size() == 1);
          state = std::move(ports[0]);
        }
        // (A segment whose header the peer scribbled over is refused: the port is gone.)
        link = Link::FromState(&state, &loop, &client, &error);
        if (link == nullptr) crossport::CloseLinkState(&state);
        break;
      }
      case kPeerLeave:
        peer.Leave();
        break;
      case kOutOfFds:
        out_of_fds = true;
        break;
      case kPeerMessage: {
        std::vector<int> fds;
        std::vector<uint8_t> payload = PeerMessage(in, &peer, &fds);
        uint8_t flip = in->U8();  // (sometimes a byte of the head is not what it should be)
        if (flip % 4 == 0 && !payload.empty()) payload[in->U8() % payload.size()] ^= flip;
        peer.PublishWithFds(RecordType::kMessage, std::move(fds), payload.data(), payload.size(),
                            in->U8() % 8 == 0);
        break;
      }
      case kPeerOutOfBand: {
        uint32_t size = in->Get<uint16_t>() % 16384;
        std::vector<int> fds{peer.MakeFd(1 + in->U8() % 3, size)};
        for (int i = in->U8() % 4; i > 0; i--) fds.push_back(peer.MakeFd(0, 0));
        uint64_t announced = in->U8() % 4 == 0 ? in->Get<uint16_t>() : size;
        peer.PublishWithFds(RecordType::kOutOfBand, std::move(fds),
                            reinterpret_cast<const uint8_t*>(&announced), sizeof announced, false);
        break;
      }
      case kSendMany: {
        if (link == nullptr) break;
        for (int i = in->Get<uint16_t>() % 300; i > 0; i--) {
          std::vector<int> fds{Copy(peer.null_fd())};
          if (fds[0] < 0) break;
          uint8_t byte = static_cast<uint8_t>(i);
          crossport::os::Span span{&byte, 1};
          link->Send(RecordType::kMessage, &span, 1, 1, std::move(fds), &error);
        }
        break;
      }
      case kStopped: {
        if (link == nullptr) break;
        bool close_next = false;
        link->PeekClose(&close_next);
        if (in->U8() % 4 == 0) link->FlushBeforeExit(0);
        break;
      }
    }
    if (tight) setrlimit(RLIMIT_NOFILE, &saved);
  }
  if (link != nullptr) link->Destroy();
  fake_uv::RunCloseCallbacks();
  CHECK(fake_uv::OpenHandles() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int before = CountOpenFds();
  Input in(data, size);
  Run(&in);
  // Every fd the link was given, read or made is closed: none leaked.
  CHECK(CountOpenFds() == before);
  return 0;
}
