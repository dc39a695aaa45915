// The operating-system services the rest of the addon needs, behind one small interface so that
// another backend (Windows) can be added without touching ring, link or port code.
// The POSIX implementation lives in native/posix/os.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace crossport::os {

// An error from a system call: the errno name ("EMFILE") and the call that failed ("mmap").
struct SystemError {
  int errnum;
  const char* syscall;
};

// Creates an anonymous shared-memory object of `size` bytes that no other process can open by
// name (memfd on Linux), sealed so that its size can never change: whoever holds it may write
// it, but cannot shrink it under another process's mapping (which would die of SIGBUS there).
// Returns the fd, close-on-exec, or -1 with `err` set.
int CreateSharedMemory(size_t size, SystemError* err);

// Maps `size` bytes of a shared-memory fd read-write (or read-only). Returns nullptr on failure.
void* MapShared(int fd, size_t size, bool writable, SystemError* err);
void Unmap(void* addr, size_t size);
// The page size, for rounding mapping lengths.
size_t PageSize();

// What a memory object from another process must be sealed against before we map it.
enum class Sealing {
  // A segment, written by both sides: it can neither shrink nor grow, nobody can add seals
  // (F_SEAL_FUTURE_WRITE would make it unmappable for the next process it moves to), and it is
  // not sealed against writing.
  kFixedSize,
  // An out-of-band object: nobody can write, shrink or grow it any more.
  kReadOnly,
};
// The size of the memory object behind `fd` when it is sealed as `sealing` requires, else -1.
// The seals are read before the size, so the size returned is the object's size for good, and
// a mapping of it can never fault. Without seals (systems without memfd), a kFixedSize object is
// taken on its size alone and a kReadOnly one is refused.
int64_t SealedSize(int fd, Sealing sealing);
// Reads `size` bytes at `offset` of `fd` (no mapping: a short object cannot fault us).
bool ReadAt(int fd, void* data, size_t size, uint64_t offset);

// A run of bytes to write.
struct Span {
  const void* data;
  size_t size;
};

// Writes the `count` spans, one after the other, into a new shared-memory object and seals it
// against any further change (Sealing::kReadOnly), so that its receiver can map it without
// copying and without fearing later writes.
int CreateSealedCopy(const Span* spans, size_t count, SystemError* err);

// Memory that can move to another process without a copy (see native/transferable.h).
// A new sealable shared-memory object of `size` bytes (zeros).
int CreateTransferableMemory(size_t size, SystemError* err);
// Maps all of it read-write and shared. Large ones are mapped at a huge-page boundary and,
// where the system allows, backed by huge pages at once (committed: filling them then takes
// no page fault, and unmapping them takes microseconds rather than milliseconds).
// `*mapped_length` is what Unmap() takes.
void* MapTransferable(int fd, size_t size, size_t* mapped_length, SystemError* err);
// Puts empty private memory (untouched, so it costs nothing) at `addr` in place of a mapping:
// the object behind it is no longer writable from here, while the addresses stay valid.
bool ReplaceWithEmpty(void* addr, size_t length, SystemError* err);
// Maps `fd` read-write at `addr` in place of what is there: shared, or copy-on-write.
bool Remap(void* addr, size_t length, int fd, bool shared, SystemError* err);
// Seals `fd` against any change (write, grow, shrink, further seals). EBUSY while a writable
// shared mapping of it exists.
bool SealAgainstChange(int fd, SystemError* err);

// A transferred buffer arrives as 1 to kMaxChunks sealed objects to be mapped end to end: all
// but the last of the same size, a multiple of kChunkAlign; the last one not larger.
constexpr size_t kMaxChunks = 16;
constexpr uint64_t kChunkAlign = 2 * 1024 * 1024;
// Checks each object (sealed against write, grow and shrink; sizes as above; the total at most
// `max_size`) before mapping anything, then maps them copy-on-write, end to end: writable here,
// and nothing the sender does can change them. `*size`: the bytes; `*mapped_length`: for Unmap.
// nullptr (EINVAL for objects that break the rules) on failure.
void* MapSealedChunks(const int* fds, size_t count, uint64_t max_size, uint64_t* size,
                      size_t* mapped_length, SystemError* err);
// True when this process wrote to some page of a copy-on-write mapping (the memory then no
// longer matches the object behind it); also when it cannot tell.
bool HasWrittenPages(const void* addr, size_t length);

// A connected pair of message-oriented unix sockets, close-on-exec and non-blocking.
bool SocketPair(int fds[2], SystemError* err);

// kFdsInFlight: the kernel holds as many fds in flight for this user as it allows
// (ETOOMANYREFS: more than the sender's RLIMIT_NOFILE, unless privileged; or no memory for them):
// nothing was sent, and room appears only as receivers take fds, which no poll event tells.
enum class IoResult { kOk, kWouldBlock, kFdsInFlight, kPeerGone, kError };

// The largest number of fds one packet can carry.
constexpr size_t kMaxFdsPerPacket = 64;

// Sends one packet carrying `fds` (at most kMaxFdsPerPacket) and one byte: their number.
// kWouldBlock when the socket buffer is full.
IoResult SendPacket(int socket, const int* fds, size_t fd_count, SystemError* err);

// Receives one packet, appending the fds it carried to `fds` (close-on-exec). An fd the kernel
// could not install here (this process is out of fds: EMFILE) is appended as -1, as many as the
// packet's byte says it carried, so the count of fds stays right. kWouldBlock when nothing is
// waiting; kPeerGone at end of stream.
IoResult ReceivePacket(int socket, std::vector<int>* fds, SystemError* err);
// Receives the packets waiting, up to `max_packets` (at most kMaxPacketsPerReceive) in one call,
// appending their fds as ReceivePacket does. kOk with *more set when the batch was full (more
// may wait). kPeerGone at end of stream (the fds of packets before it are appended).
constexpr size_t kMaxPacketsPerReceive = 16;
IoResult ReceivePackets(int socket, size_t max_packets, std::vector<int>* fds, bool* more,
                        SystemError* err);

// Looks at the next packet without taking it: whether one waits (kOk), and how many fds it
// carries (*fd_count; what its byte says, at least 1 when it carries any). Installs no fd.
IoResult PeekPacket(int socket, size_t* fd_count);

// Where unrelated processes meet: a message-oriented unix socket at a path, or at a Linux
// abstract name (a `path` that starts with a NUL byte). Sockets are close-on-exec, non-blocking.
struct PeerCredentials {
  int pid;
  unsigned uid;
  unsigned gid;
};
// Which file a path named when we looked (st_dev, st_ino).
struct FileId {
  uint64_t device = 0;
  uint64_t inode = 0;
};
// Binds and listens at `path`. A path in the file system gets a socket file of exactly `mode`
// that never exists with a wider one, even briefly, and whose mode is never set through a name
// someone else can replace; `file` tells which file it is. EADDRINUSE when anything is there.
int ListenLocal(const std::string& path, unsigned mode, int backlog, FileId* file,
                SystemError* err);
// Accepts one waiting connection and reads the peer's credentials as the kernel reports them.
// -1 with err EAGAIN when none waits.
int AcceptLocal(int listener, PeerCredentials* peer, SystemError* err);
// Connects to `path` (ENOENT, ECONNREFUSED, EAGAIN when its queue is full...) and reads the
// credentials of the process that listens there, as the kernel recorded them at listen().
int ConnectLocal(const std::string& path, PeerCredentials* listener, SystemError* err);

// True when `fd` is what a link's socket must be: a unix SOCK_SEQPACKET socket, connected; its
// peer's credentials go to `peer` (for a socket pair: those of the process that made the pair,
// as the kernel recorded them then; pid -1 where the system does not tell). Reads only.
bool InspectLinkSocket(int fd, PeerCredentials* peer);

// Lets another runnable thread on this CPU go first (while we poll, our peer may be waiting).
void YieldCpu();
// Threads running or waiting for a CPU on the whole system, this one included; -1 if unknown.
int RunnableThreads();
// The CPUs this process may run on; -1 if unknown.
int UsableCpus();
// Waits up to `timeout_ms` for a packet (or end of stream) on `socket`, or, with `writable`,
// for room to send. False on timeout.
bool WaitForSocket(int socket, bool writable, int timeout_ms);

// What kind of object an fd is, as far as rebuilding a transferred handle goes.
enum class FdKind { kStreamSocket, kListeningSocket, kUdp4Socket, kUdp6Socket, kOther, kNotOpen };
FdKind KindOfFd(int fd);

void Close(int fd);
// Marks an inherited fd close-on-exec; false if it is not open.
bool SetCloseOnExec(int fd);
// Duplicates an fd, close-on-exec; -1 on failure.
int Duplicate(int fd, SystemError* err);

// Sends one packet holding the single byte `byte` without blocking; false if it could not.
bool SendByte(int socket, char byte);
// Asks the kernel to send this process `signal` when its parent (the thread that forked it)
// ends. False where the system has no such facility.
bool SetParentDeathSignal(int signal);
// Ends the process at once with `status`: no atexit handlers, no static destructors.
[[noreturn]] void ExitNow(int status);
// The bounds [low, high) of the calling thread's stack (for the main thread, as far as its
// RLIMIT_STACK lets it grow); false where the system does not say.
bool ThreadStackBounds(uintptr_t* low, uintptr_t* high);

}  // namespace crossport::os
