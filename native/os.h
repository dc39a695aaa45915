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
// name (memfd on Linux). Returns the fd, close-on-exec, or -1 with `err` set.
int CreateSharedMemory(size_t size, SystemError* err);

// Maps `size` bytes of a shared-memory fd read-write (or read-only). Returns nullptr on failure.
void* MapShared(int fd, size_t size, bool writable, SystemError* err);
void Unmap(void* addr, size_t size);
// The page size, for rounding mapping lengths.
size_t PageSize();

// Size of the object behind `fd`, or -1.
int64_t FileSize(int fd);

// A run of bytes to write.
struct Span {
  const void* data;
  size_t size;
};

// Writes the `count` spans, one after the other, into a new shared-memory object and seals it
// against any further change, so that its receiver can map it without copying and without
// fearing later writes.
int CreateSealedCopy(const Span* spans, size_t count, SystemError* err);
// True when `fd` is a sealed object that nobody can write, grow or shrink any more.
bool IsSealedReadOnly(int fd);

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

enum class IoResult { kOk, kWouldBlock, kPeerGone, kError };

// Sends one packet carrying one byte and `fds`. kWouldBlock when the socket buffer is full.
IoResult SendPacket(int socket, const int* fds, size_t fd_count, SystemError* err);

// The largest number of fds one packet can carry.
constexpr size_t kMaxFdsPerPacket = 64;

// Receives one packet, appending the fds it carried to `fds` (close-on-exec).
// kWouldBlock when nothing is waiting; kPeerGone at end of stream.
IoResult ReceivePacket(int socket, std::vector<int>* fds, SystemError* err);
// Receives the packets waiting, up to a batch of them in one call, appending their fds.
// kOk with *more set when the batch was full (call again). kPeerGone at end of stream.
IoResult ReceivePackets(int socket, std::vector<int>* fds, bool* more, SystemError* err);

// Where unrelated processes meet: a message-oriented unix socket at a path, or at a Linux
// abstract name (a `path` that starts with a NUL byte). Sockets are close-on-exec, non-blocking.
struct PeerCredentials {
  int pid;
  unsigned uid;
  unsigned gid;
};
// Binds and listens at `path`. A path in the file system gets `mode` before anyone can connect.
int ListenLocal(const std::string& path, unsigned mode, int backlog, SystemError* err);
// Accepts one waiting connection and reads the peer's credentials as the kernel reports them.
// -1 with err EAGAIN when none waits.
int AcceptLocal(int listener, PeerCredentials* peer, SystemError* err);
// Connects to `path` (ENOENT, ECONNREFUSED, EAGAIN when its queue is full...).
int ConnectLocal(const std::string& path, SystemError* err);

// Lets another runnable thread on this CPU go first (while we poll, our peer may be waiting).
void YieldCpu();
// Threads running or waiting for a CPU on the whole system, this one included; -1 if unknown.
int RunnableThreads();
// The CPUs this process may run on; -1 if unknown.
int UsableCpus();
// Waits up to `timeout_ms` for a packet (or end of stream) on `socket`, or, with `writable`,
// for room to send. False on timeout.
bool WaitForSocket(int socket, bool writable, int timeout_ms);

void Close(int fd);
// Marks an inherited fd close-on-exec; false if it is not open.
bool SetCloseOnExec(int fd);
// Duplicates an fd, close-on-exec; -1 on failure.
int Duplicate(int fd, SystemError* err);

}  // namespace crossport::os
