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
// Maps `size` bytes of `fd` copy-on-write: readable and writable here, never written back.
void* MapPrivate(int fd, size_t size, SystemError* err);
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
