// POSIX implementation of native/os.h (Linux: memfd with seals; elsewhere shm_open + unlink).
#include "../os.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/magic.h>
#include <sys/vfs.h>
#endif
#ifndef O_PATH
#define O_PATH O_RDONLY  // (a directory fd that is only used as a place)
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace crossport::os {

namespace {

void SetError(SystemError* err, const char* syscall) {
  if (err != nullptr) *err = SystemError{errno, syscall};
}

#ifdef __linux__
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010  // Linux 5.1; older headers lack the name
#endif
// What Sealing asks for (see os.h). F_SEAL_SEAL on a segment also keeps F_SEAL_FUTURE_WRITE
// out: added later, it would leave existing mappings writable but refuse the next one.
constexpr int kFixedSizeSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
constexpr int kReadOnlySeals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;

// `name` shows in /proc/<pid>/maps ("/memfd:<name>").
int OpenMemoryObject(const char* name, SystemError* err) {
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) SetError(err, "memfd_create");
  return fd;
}

bool AddSeals(int fd, int seals, SystemError* err) {
  if (fcntl(fd, F_ADD_SEALS, seals) == 0) return true;
  SetError(err, "fcntl");
  return false;
}
#else
// No seals here: the fallback's objects can change size under a mapping (see SealedSize).
bool AddSeals(int, int, SystemError*) { return true; }
constexpr int kFixedSizeSeals = 0;
constexpr int kReadOnlySeals = 0;

int OpenMemoryObject(const char*, SystemError* err) {
  // A random name that is unlinked at once: no other process can open it afterwards.
  char name[64];
  for (int attempt = 0; attempt < 16; attempt++) {
    snprintf(name, sizeof name, "/crossport-%d-%lx", getpid(), static_cast<long>(random()));
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) {
      shm_unlink(name);
      fcntl(fd, F_SETFD, FD_CLOEXEC);
      return fd;
    }
    if (errno != EEXIST) break;
  }
  SetError(err, "shm_open");
  return -1;
}
#endif

// A new memory object of `size` bytes (zeros), not yet sealed; -1 on failure.
int NewMemoryObject(const char* name, size_t size, SystemError* err) {
  int fd = OpenMemoryObject(name, err);
  if (fd < 0) return -1;
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    SetError(err, "ftruncate");
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int CreateSharedMemory(size_t size, SystemError* err) {
  int fd = NewMemoryObject("crossport", size, err);
  if (fd < 0) return -1;
  // Sealed before anyone else can hold it.
  if (!AddSeals(fd, kFixedSizeSeals, err)) {
    close(fd);
    return -1;
  }
  return fd;
}

void* MapShared(int fd, size_t size, bool writable, SystemError* err) {
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* addr = mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    SetError(err, "mmap");
    return nullptr;
  }
  return addr;
}

size_t PageSize() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

void Unmap(void* addr, size_t size) {
  if (addr != nullptr) munmap(addr, size);
}

int64_t SealedSize(int fd, Sealing sealing) {
#ifdef __linux__
  // Seals can be added, never removed: once the object cannot shrink or grow, the size read
  // below stays its size, whatever its other holders do afterwards.
  int seals = fcntl(fd, F_GET_SEALS);
  int required = sealing == Sealing::kFixedSize ? kFixedSizeSeals : kReadOnlySeals;
  int refused = sealing == Sealing::kFixedSize ? F_SEAL_WRITE | F_SEAL_FUTURE_WRITE : 0;
  if (seals < 0 || (seals & required) != required || (seals & refused) != 0) return -1;
  // Only the kernel's own tmpfs, where memfds live: a hugetlbfs memfd can also be sealed, but
  // its pages can fail to fault in (SIGBUS) when huge pages run out.
  struct statfs filesystem;
  if (fstatfs(fd, &filesystem) != 0 || filesystem.f_type != TMPFS_MAGIC) return -1;
#else
  if (sealing == Sealing::kReadOnly) return -1;
#endif
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return static_cast<int64_t>(st.st_size);
}

bool ReadAt(int fd, void* data, size_t size, uint64_t offset) {
  auto* at = static_cast<char*>(data);
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, at + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

namespace {
bool WriteAll(int fd, const void* data, size_t size, off_t at) {
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(fd, p + done, size - done, at + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// `length` bytes of address space at a multiple of `align`, reserved (no access, no memory).
uint8_t* ReserveAligned(size_t length, size_t align, SystemError* err) {
  void* raw = mmap(nullptr, length + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (raw == MAP_FAILED) {
    SetError(err, "mmap");
    return nullptr;
  }
  auto start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + align - 1) / align * align;
  if (aligned > start) munmap(raw, aligned - start);
  munmap(reinterpret_cast<void*>(aligned + length), start + align - aligned);
  return reinterpret_cast<uint8_t*>(aligned);
}

// Backs a fresh shared mapping with huge pages where the system allows: MADV_COLLAPSE puts one
// in place of each 2 MiB that holds a page (one byte written each, with no page-table entry),
// even where transparent huge pages are off for shared memory (shmem_enabled "never", as on this
// project's machines). Best effort: what cannot be collapsed stays in 4 KiB pages (false).
// Compared with 4 KiB pages, filling 512 MiB allocates 256 pages instead of 131,072, and
// unmapping or freeing them takes microseconds instead of tens of milliseconds.
bool BackWithHugePages(int fd, uint8_t* addr, size_t size) {
#ifdef __linux__
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
  size_t huge = size / kChunkAlign * kChunkAlign;
  if (huge == 0) return false;
  madvise(addr, huge, MADV_HUGEPAGE);
  const char zero = 0;
  for (size_t at = 0; at < huge; at += kChunkAlign) {
    if (pwrite(fd, &zero, 1, static_cast<off_t>(at)) != 1) return false;
  }
  return madvise(addr, huge, MADV_COLLAPSE) == 0;
#else
  (void)fd;
  (void)addr;
  (void)size;
  return false;
#endif
}

// Fills `fd` (of `size` bytes, fresh) with the spans through a mapping backed by huge pages;
// false, with none of the spans written, where the system gives none.
bool CopyThroughHugePages(int fd, const Span* spans, size_t count, size_t size) {
  size_t length = RoundUp(size, PageSize());
  uint8_t* addr = ReserveAligned(length, kChunkAlign, nullptr);
  if (addr == nullptr) return false;
  bool huge =
      mmap(addr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) != MAP_FAILED &&
      BackWithHugePages(fd, addr, size);
  if (huge) {
    uint8_t* at = addr;
    for (size_t i = 0; i < count; i++) {
      if (spans[i].size > 0) memcpy(at, spans[i].data, spans[i].size);
      at += spans[i].size;
    }
  }
  munmap(addr, length);  // (before sealing: a writable mapping forbids F_SEAL_WRITE)
  return huge;
}

}  // namespace

int CreateSealedCopy(const Span* spans, size_t count, SystemError* err) {
  size_t size = 0;
  for (size_t i = 0; i < count; i++) size += spans[i].size;
  int fd = NewMemoryObject("crossport", size, err);
  if (fd < 0) return -1;
  // Large: through huge pages where the system gives them, else written page by page (pwrite
  // takes no page fault, and does not zero pages it fills whole).
  if (size < kChunkAlign || !CopyThroughHugePages(fd, spans, count, size)) {
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
      if (!WriteAll(fd, spans[i].data, spans[i].size, static_cast<off_t>(at))) {
        SetError(err, "pwrite");
        close(fd);
        return -1;
      }
      at += spans[i].size;
    }
  }
  if (!AddSeals(fd, kReadOnlySeals | kFixedSizeSeals, err)) {
    close(fd);
    return -1;
  }
  return fd;
}

int CreateTransferableMemory(size_t size, SystemError* err) {
  return NewMemoryObject("crossport-buffer", size, err);
}

void* MapTransferable(int fd, size_t size, size_t* mapped_length, SystemError* err) {
  size_t length = RoundUp(size, PageSize());
  uint8_t* addr = ReserveAligned(length, size >= kChunkAlign ? kChunkAlign : PageSize(), err);
  if (addr == nullptr) return nullptr;
  if (mmap(addr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
    SetError(err, "mmap");
    munmap(addr, length);
    return nullptr;
  }
  BackWithHugePages(fd, addr, size);
  *mapped_length = length;
  return addr;
}

bool ReplaceWithEmpty(void* addr, size_t length, SystemError* err) {
  void* empty = mmap(addr, length, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (empty == MAP_FAILED) {
    SetError(err, "mmap");
    return false;
  }
  return true;
}

bool Remap(void* addr, size_t length, int fd, bool shared, SystemError* err) {
  int flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED;
  if (mmap(addr, length, PROT_READ | PROT_WRITE, flags, fd, 0) == MAP_FAILED) {
    SetError(err, "mmap");
    return false;
  }
  return true;
}

bool SealAgainstChange(int fd, SystemError* err) {
#ifdef __linux__
  return AddSeals(fd, kReadOnlySeals | kFixedSizeSeals, err);
#else
  (void)fd;
  *err = SystemError{ENOTSUP, "fcntl"};  // (AddSeals pretends here: nothing could be relied on)
  return false;
#endif
}

void* MapSealedChunks(const int* fds, size_t count, uint64_t max_size, uint64_t* size,
                      size_t* mapped_length, SystemError* err) {
  // Everything is checked before anything is mapped: a mapping of an object that can still
  // shrink would fault (SIGBUS) once the peer shrinks it, and one that can still be written
  // would change under us.
  std::vector<uint64_t> sizes;
  bool valid = count > 0 && count <= kMaxChunks;
  uint64_t total = 0;
  for (size_t i = 0; valid && i < count; i++) {
    int64_t chunk = SealedSize(fds[i], Sealing::kReadOnly);
    valid = chunk > 0;
    if (!valid) break;
    auto bytes = static_cast<uint64_t>(chunk);
    bool last = i + 1 == count;
    valid = bytes <= max_size - total && (last || bytes % kChunkAlign == 0) &&
            (i == 0 || (last ? bytes <= sizes[0] : bytes == sizes[0]));
    sizes.push_back(bytes);
    total += bytes;
  }
  if (!valid) {
    *err = SystemError{EINVAL, "mmap"};
    return nullptr;
  }
  size_t length = RoundUp(total, PageSize());
  uint8_t* base = ReserveAligned(length, total >= kChunkAlign ? kChunkAlign : PageSize(), err);
  if (base == nullptr) return nullptr;
  uint64_t at = 0;
  for (size_t i = 0; i < count; i++) {
    size_t chunk_length = RoundUp(sizes[i], PageSize());
    if (mmap(base + at, chunk_length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fds[i], 0) ==
        MAP_FAILED) {
      SetError(err, "mmap");
      munmap(base, length);
      return nullptr;
    }
    at += sizes[i];
  }
  *size = total;
  *mapped_length = length;
  return base;
}

bool HasWrittenPages(const void* addr, size_t length) {
#ifdef __linux__
  // /proc/self/pagemap: one u64 per page. Present (bit 63) but not a file page (bit 61): a
  // private copy made by a write; swapped out (bit 62): only private copies can be.
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  size_t page = PageSize();
  uint64_t first = reinterpret_cast<uintptr_t>(addr) / page;
  uint64_t pages = RoundUp(length, page) / page;
  constexpr uint64_t kPresent = uint64_t{1} << 63;
  constexpr uint64_t kSwapped = uint64_t{1} << 62;
  constexpr uint64_t kFile = uint64_t{1} << 61;
  uint64_t entries[4096];
  bool written = false;
  for (uint64_t done = 0; done < pages && !written;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(pages - done, 4096));
    ssize_t n = pread(fd, entries, want * sizeof(uint64_t),
                      static_cast<off_t>((first + done) * sizeof(uint64_t)));
    if (n <= 0 || n % sizeof(uint64_t) != 0) {
      written = true;
      break;
    }
    size_t got = static_cast<size_t>(n) / sizeof(uint64_t);
    for (size_t i = 0; i < got && !written; i++) {
      written = (entries[i] & kSwapped) != 0 || (entries[i] & (kPresent | kFile)) == kPresent;
    }
    done += got;
  }
  close(fd);
  return written;
#else
  (void)addr;
  (void)length;
  return true;
#endif
}

bool SocketPair(int fds[2], SystemError* err) {
#ifdef __linux__
  int type = SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK;
  if (socketpair(AF_UNIX, type, 0, fds) != 0) {
    SetError(err, "socketpair");
    return false;
  }
#else
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds) != 0) {
    SetError(err, "socketpair");
    return false;
  }
  for (int i = 0; i < 2; i++) {
    fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
  }
#endif
  return true;
}

IoResult SendPacket(int socket, const int* fds, size_t fd_count, SystemError* err) {
  if (fd_count > kMaxFdsPerPacket) fd_count = kMaxFdsPerPacket;
  auto byte = static_cast<unsigned char>(fd_count);
  struct iovec iov = {&byte, 1};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerPacket)];
  if (fd_count > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * fd_count);
  }
  for (;;) {
    ssize_t n = sendmsg(socket, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return IoResult::kOk;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return IoResult::kWouldBlock;
    if (errno == ETOOMANYREFS || errno == ENOBUFS || errno == ENOMEM) return IoResult::kFdsInFlight;
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) return IoResult::kPeerGone;
    SetError(err, "sendmsg");
    return IoResult::kError;
  }
}

namespace {

#ifdef MSG_CMSG_CLOEXEC
constexpr int kReceiveFlags = MSG_DONTWAIT | MSG_CMSG_CLOEXEC;
#else
constexpr int kReceiveFlags = MSG_DONTWAIT;
#endif

IoResult ReceiveError(SystemError* err) {
  if (errno == EAGAIN || errno == EWOULDBLOCK) return IoResult::kWouldBlock;
  if (errno == ECONNRESET || errno == ENOTCONN) return IoResult::kPeerGone;
  SetError(err, "recvmsg");
  return IoResult::kError;
}

// One packet's buffers: its byte (room for more, so a longer packet is not mistaken for ours) and
// room for the most fds a packet can carry.
struct PacketBuffer {
  char bytes[16];
  struct iovec iov;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerPacket)];

  void Prepare(struct msghdr* msg) {
    iov = {bytes, sizeof bytes};
    *msg = {};
    msg->msg_iov = &iov;
    msg->msg_iovlen = 1;
    msg->msg_control = control;
    msg->msg_controllen = sizeof control;
  }
};

// Appends the fds a received packet of `length` bytes carried to `fds`: every fd the kernel
// handed us, even from a malformed packet, so none leaks. false at end of stream (length 0:
// every packet we send carries a byte).
bool TakeFds(const struct msghdr* msg, size_t length, std::vector<int>* fds) {
  size_t installed = 0;
  auto* header = const_cast<struct msghdr*>(msg);  // (CMSG_NXTHDR takes a non-const one)
  for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(header); cmsg != nullptr;
       cmsg = CMSG_NXTHDR(header, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    if (cmsg->cmsg_len < CMSG_LEN(0)) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
#ifndef MSG_CMSG_CLOEXEC
      fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
      fds->push_back(fd);
      installed++;
    }
  }
  if (length == 0) return false;
  // Out of fds here (EMFILE), the kernel installs what it can, drops the rest and says so.
  size_t declared = static_cast<unsigned char>(static_cast<const char*>(msg->msg_iov->iov_base)[0]);
  if (declared > kMaxFdsPerPacket) declared = kMaxFdsPerPacket;
  if ((msg->msg_flags & MSG_CTRUNC) != 0 && declared > installed) {
    fds->insert(fds->end(), declared - installed, -1);
  }
  return true;
}

}  // namespace

IoResult ReceivePacket(int socket, std::vector<int>* fds, SystemError* err) {
  PacketBuffer buffer;
  struct msghdr msg;
  buffer.Prepare(&msg);
  ssize_t n;
  do {
    n = recvmsg(socket, &msg, kReceiveFlags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ReceiveError(err);
  return TakeFds(&msg, static_cast<size_t>(n), fds) ? IoResult::kOk : IoResult::kPeerGone;
}

IoResult ReceivePackets(int socket, size_t max_packets, std::vector<int>* fds, bool* more,
                        SystemError* err) {
#ifdef __linux__
  // One call for the whole batch: a wake-up then costs one system call, not one more to learn
  // that nothing else waits.
  PacketBuffer buffers[kMaxPacketsPerReceive];
  struct mmsghdr headers[kMaxPacketsPerReceive];
  auto batch = static_cast<unsigned>(std::min(std::max<size_t>(max_packets, 1),
                                              kMaxPacketsPerReceive));
  for (unsigned i = 0; i < batch; i++) {
    buffers[i].Prepare(&headers[i].msg_hdr);
    headers[i].msg_len = 0;
  }
  int n;
  do {
    n = recvmmsg(socket, headers, batch, kReceiveFlags, nullptr);
  } while (n < 0 && errno == EINTR);
  *more = false;
  if (n < 0) return ReceiveError(err);
  bool ended = false;
  for (int i = 0; i < n; i++) {
    ended = !TakeFds(&headers[i].msg_hdr, headers[i].msg_len, fds) || ended;
  }
  if (ended) return IoResult::kPeerGone;
  *more = n == static_cast<int>(batch);
  return IoResult::kOk;
#else
  (void)max_packets;
  *more = true;
  return ReceivePacket(socket, fds, err);
#endif
}

IoResult PeekPacket(int socket, size_t* fd_count) {
  unsigned char byte = 0;
  struct iovec iov = {&byte, 1};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // No room for control data: the kernel reports the fds (MSG_CTRUNC) but installs none, and
  // they stay with the packet.
  ssize_t n;
  do {
    n = recvmsg(socket, &msg, MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  *fd_count = 0;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return IoResult::kWouldBlock;
    return errno == ECONNRESET || errno == ENOTCONN ? IoResult::kPeerGone : IoResult::kError;
  }
  if (n == 0) return IoResult::kPeerGone;
  if ((msg.msg_flags & MSG_CTRUNC) != 0) *fd_count = byte > 0 ? byte : 1;
  return IoResult::kOk;
}

namespace {

int NewLocalSocket(SystemError* err) {
#ifdef __linux__
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
#else
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  if (fd >= 0) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
#endif
  if (fd < 0) SetError(err, "socket");
  return fd;
}

// The address for `path`; false (ENAMETOOLONG) when it does not fit.
bool LocalAddress(const std::string& path, struct sockaddr_un* address, socklen_t* length,
                  SystemError* err) {
  memset(address, 0, sizeof *address);
  address->sun_family = AF_UNIX;
  bool abstract = !path.empty() && path[0] == '\0';
  // A file-system path needs its terminating NUL inside sun_path; an abstract name does not.
  if (path.empty() || path.size() + (abstract ? 0 : 1) > sizeof address->sun_path) {
    *err = SystemError{path.empty() ? ENOENT : ENAMETOOLONG, "bind"};
    return false;
  }
  memcpy(address->sun_path, path.data(), path.size());
  *length = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() +
                                   (abstract ? 0 : 1));
  return true;
}

// The credentials of the process at the other end of a connected socket.
bool ReadPeerCredentials(int fd, PeerCredentials* peer, SystemError* err) {
#ifdef __linux__
  struct ucred credentials;
  socklen_t size = sizeof credentials;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) {
    SetError(err, "getsockopt");
    return false;
  }
  *peer = PeerCredentials{credentials.pid, credentials.uid, credentials.gid};
#else
  uid_t uid;
  gid_t gid;
  if (getpeereid(fd, &uid, &gid) != 0) {
    SetError(err, "getpeereid");
    return false;
  }
  *peer = PeerCredentials{-1, uid, gid};
#endif
  return true;
}

// A socket file made in a private directory next to its final place: mkdir'd 0700, checked to
// be ours, holding the bound socket as "s" until it is linked into place.
class PrivateDirectory {
 public:
  // `directory`: an O_PATH fd of the final place's directory (not taken).
  explicit PrivateDirectory(int directory) : directory_(directory) {}
  ~PrivateDirectory() {
    if (bound_) unlinkat(fd_, "s", 0);
    if (fd_ >= 0) close(fd_);
    // (If someone renamed ours away meanwhile, this removes theirs only if it is empty.)
    if (made_) unlinkat(directory_, name_, AT_REMOVEDIR);
  }

  bool Make(SystemError* err) {
    for (int attempt = 0; attempt < 16 && !made_; attempt++) {
      snprintf(name_, sizeof name_, ".crossport-%d-%08lx", getpid(), static_cast<long>(random()));
      made_ = mkdirat(directory_, name_, 0700) == 0;
      if (!made_ && errno != EEXIST) break;
    }
    if (!made_) {
      SetError(err, "bind");
      return false;
    }
    fd_ = openat(directory_, name_, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd_ < 0 || fstat(fd_, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
      // Someone put another directory (or a symlink) there between the two calls.
      *err = SystemError{EPERM, "bind"};
      return false;
    }
    return true;
  }

  // Where bind() puts "s": through our fd where the system allows (no name is looked up
  // again), else by its path (which, replaced, only makes the next steps fail).
  std::string SocketPath(const std::string& directory_path) const {
#ifdef __linux__
    (void)directory_path;
    return "/proc/self/fd/" + std::to_string(fd_) + "/s";
#else
    return directory_path + "/" + name_ + "/s";
#endif
  }

  int fd() const { return fd_; }
  void set_bound() { bound_ = true; }

 private:
  int directory_;
  int fd_ = -1;
  char name_[48];
  bool made_ = false;
  bool bound_ = false;
};

bool BindTo(int fd, const std::string& path, SystemError* err) {
  struct sockaddr_un address;
  socklen_t length;
  if (!LocalAddress(path, &address, &length, err)) return false;
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&address), length) != 0) {
    SetError(err, "bind");
    return false;
  }
  return true;
}

bool Listen(int fd, int backlog, SystemError* err) {
  if (listen(fd, backlog) == 0) return true;
  SetError(err, "listen");
  return false;
}

// Binds `fd` to the file-system `path` and listens, its socket file of `mode`. A socket file's
// mode can only be set by name, and a chmod after bind() once landed on the target of a symlink
// swapped in meanwhile: so the file is bound in a private directory next to `path`, given its
// mode there (after fchmod on the socket, on Linux the file is created with it, the umask only
// narrowing it), and linked into place, where it appears with its mode, or not at all.
bool ListenAtFile(int fd, const std::string& path, unsigned mode, int backlog, FileId* file,
                  SystemError* err) {
  struct sockaddr_un final_address;
  socklen_t length;
  if (!LocalAddress(path, &final_address, &length, err)) return false;  // clients need it to fit
  size_t slash = path.rfind('/');
  std::string directory_path = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    *err = SystemError{EINVAL, "bind"};
    return false;
  }
  int directory = open(directory_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (directory < 0) {
    SetError(err, "bind");
    return false;
  }
  bool listening;
  {
    PrivateDirectory temporary(directory);
    fchmod(fd, mode);  // (systems where a socket has no mode of its own refuse it: no matter)
    listening = temporary.Make(err) && BindTo(fd, temporary.SocketPath(directory_path), err);
    if (listening) temporary.set_bound();
    struct stat st;
    if (listening && (fchmodat(temporary.fd(), "s", mode, 0) != 0 ||
                      fstatat(temporary.fd(), "s", &st, AT_SYMLINK_NOFOLLOW) != 0)) {
      SetError(err, "chmod");
      listening = false;
    }
    listening = listening && Listen(fd, backlog, err);
    if (listening && linkat(temporary.fd(), "s", directory, name.c_str(), 0) != 0) {
      // Something is there already: what bind() itself reports.
      *err = SystemError{errno == EEXIST ? EADDRINUSE : errno, "bind"};
      listening = false;
    }
    if (listening) *file = FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  }
  close(directory);
  return listening;
}

}  // namespace

int ListenLocal(const std::string& path, unsigned mode, int backlog, FileId* file,
                SystemError* err) {
  int fd = NewLocalSocket(err);
  if (fd < 0) return -1;
  bool abstract = !path.empty() && path[0] == '\0';
  bool listening = abstract ? BindTo(fd, path, err) && Listen(fd, backlog, err)
                            : ListenAtFile(fd, path, mode, backlog, file, err);
  if (!listening) {
    close(fd);
    return -1;
  }
  return fd;
}

int AcceptLocal(int listener, PeerCredentials* peer, SystemError* err) {
  int fd;
  for (;;) {
#ifdef __linux__
    fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
#else
    fd = accept(listener, nullptr, nullptr);
#endif
    if (fd >= 0 || errno != EINTR) break;
  }
  if (fd < 0) {
    SetError(err, "accept");
    return -1;
  }
#ifndef __linux__
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
#endif
  if (!ReadPeerCredentials(fd, peer, err)) {
    close(fd);
    return -1;
  }
  return fd;
}

int ConnectLocal(const std::string& path, PeerCredentials* listener, SystemError* err) {
  struct sockaddr_un address;
  socklen_t length;
  if (!LocalAddress(path, &address, &length, err)) {
    err->syscall = "connect";
    return -1;
  }
  int fd = NewLocalSocket(err);
  if (fd < 0) return -1;
  int result;
  do {
    result = connect(fd, reinterpret_cast<struct sockaddr*>(&address), length);
  } while (result != 0 && errno == EINTR);
  if (result != 0) {
    SetError(err, "connect");
    close(fd);
    return -1;
  }
  if (!ReadPeerCredentials(fd, listener, err)) {
    close(fd);
    return -1;
  }
  return fd;
}

bool InspectLinkSocket(int fd, PeerCredentials* peer) {
  int type = 0;
  socklen_t size = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0 || type != SOCK_SEQPACKET) {
    return false;  // (ENOTSOCK, EBADF: not a socket, or not open)
  }
  struct sockaddr_storage address;
  socklen_t length = sizeof address;
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&address), &length) != 0 ||
      address.ss_family != AF_UNIX) {
    return false;
  }
  return ReadPeerCredentials(fd, peer, nullptr);
}

void YieldCpu() { sched_yield(); }

int RunnableThreads() {
#ifdef __linux__
  // /proc/loadavg: "0.20 0.18 0.12 2/190 12345": the fourth field is running/existing threads,
  // counted at the moment of the read.
  int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char text[128];
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return -1;
  text[n] = '\0';
  const char* slash = strchr(text, '/');
  if (slash == nullptr) return -1;
  const char* digits = slash;
  while (digits > text && digits[-1] >= '0' && digits[-1] <= '9') digits--;
  if (digits == slash) return -1;
  return atoi(digits);
#else
  return -1;
#endif
}

int UsableCpus() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
#endif
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : -1;
}

bool WaitForSocket(int socket, bool writable, int timeout_ms) {
  struct pollfd entry = {socket, static_cast<short>(POLLIN | (writable ? POLLOUT : 0)), 0};
  for (;;) {
    int n = poll(&entry, 1, timeout_ms);
    if (n >= 0) return n > 0;
    if (errno != EINTR) return false;
  }
}

FdKind KindOfFd(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return FdKind::kNotOpen;
  if (!S_ISSOCK(st.st_mode)) return FdKind::kOther;
  int type = 0, listening = 0, domain = 0;
  socklen_t size = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0) return FdKind::kOther;
  size = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0) listening = 0;
  if (type == SOCK_STREAM) return listening != 0 ? FdKind::kListeningSocket : FdKind::kStreamSocket;
#ifdef SO_DOMAIN
  size = sizeof domain;
  if (type == SOCK_DGRAM && getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &size) == 0) {
    if (domain == AF_INET) return FdKind::kUdp4Socket;
    if (domain == AF_INET6) return FdKind::kUdp6Socket;
  }
#endif
  return FdKind::kOther;
}

void Close(int fd) {
  if (fd >= 0) close(fd);
}

bool SetCloseOnExec(int fd) {
  return fcntl(fd, F_SETFD, FD_CLOEXEC) == 0;
}

int Duplicate(int fd, SystemError* err) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) SetError(err, "fcntl");
  return copy;
}

bool SendByte(int socket, char byte) {
  for (;;) {
    if (send(socket, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) return true;
    if (errno != EINTR) return false;
  }
}

bool SetParentDeathSignal(int signal) {
#ifdef __linux__
  return prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(signal)) == 0;
#else
  return false;
#endif
}

void ExitNow(int status) { _exit(status); }

bool ThreadStackBounds(uintptr_t* low, uintptr_t* high) {
#if defined(__linux__)
  pthread_attr_t attributes;
  if (pthread_getattr_np(pthread_self(), &attributes) != 0) return false;
  void* address = nullptr;
  size_t size = 0;
  bool known = pthread_attr_getstack(&attributes, &address, &size) == 0;
  pthread_attr_destroy(&attributes);
  if (!known) return false;
  *low = reinterpret_cast<uintptr_t>(address);
  *high = *low + size;
  return true;
#elif defined(__APPLE__)
  pthread_t self = pthread_self();
  *high = reinterpret_cast<uintptr_t>(pthread_get_stackaddr_np(self));
  *low = *high - pthread_get_stacksize_np(self);
  return true;
#else
  return false;
#endif
}

}  // namespace crossport::os
