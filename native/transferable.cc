#include "transferable.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "serializer.h"

namespace crossport {

namespace {

// The largest buffer a peer may transfer (what the receiver maps).
constexpr uint64_t kMaxIncomingSize = uint64_t{1} << 34;
// A copied buffer is split into chunks (one sealed object each) that the CPUs fill at once: at
// least this large, at most kCopyChunks of them.
constexpr uint64_t kMinCopyChunk = 32 * 1024 * 1024;
constexpr uint64_t kCopyChunks = 8;

// Memory mapped from shared-memory objects under an ArrayBuffer of ours.
struct Allocation {
  enum class State {
    kShared,   // from allocateTransferable: the object, mapped read-write and shared
    kPrivate,  // received: sealed objects, mapped copy-on-write
    kGone,     // handed over: empty memory at the same addresses, until the buffer is freed
  };
  uint8_t* base;
  size_t size;
  size_t mapped_length;
  std::vector<int> fds;  // the objects behind the mapping, in order
  State state;
};

// Every Allocation alive in the process, by address: the memory is the process's, and its
// ArrayBuffers may move between threads (worker_threads) and be freed on any of them.
struct Registry {
  std::mutex mutex;
  std::unordered_map<const void*, Allocation*> by_address;
};

Registry& GetRegistry() {
  static Registry* registry = new Registry();  // never destroyed: buffers may outlive exit
  return *registry;
}

void Register(Allocation* allocation) {
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  registry.by_address[allocation->base] = allocation;
}

Allocation* Find(const void* data, size_t size) {
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  auto found = registry.by_address.find(data);
  if (found == registry.by_address.end() || found->second->size != size) return nullptr;
  return found->second;
}

// The ArrayBuffer's memory is no longer used (V8 calls this on any thread).
void Release(void* data, size_t, void* owner) {
  auto* allocation = static_cast<Allocation*>(owner);
  {
    Registry& registry = GetRegistry();
    std::lock_guard<std::mutex> lock(registry.mutex);
    auto found = registry.by_address.find(data);
    if (found != registry.by_address.end() && found->second == allocation) {
      registry.by_address.erase(found);
    }
  }
  os::Unmap(allocation->base, allocation->mapped_length);
  for (int fd : allocation->fds) os::Close(fd);
  delete allocation;
}

Napi::ArrayBuffer Wrap(Napi::Env env, Allocation* allocation) {
  Register(allocation);
  return NewExternalArrayBuffer(env, allocation->base, allocation->size, Release, allocation);
}

// Takes an allocation's own memory for a transfer; false when it must be copied instead.
bool HandOver(Allocation* allocation, OutgoingBuffer* out, os::SystemError* err) {
  if (allocation->state == Allocation::State::kPrivate) {
    // Written pages are private to this process: the objects no longer hold what the buffer does.
    if (os::HasWrittenPages(allocation->base, allocation->size)) return false;
    for (int fd : allocation->fds) {
      int copy = os::Duplicate(fd, err);
      if (copy < 0) {
        for (int made : out->chunks) os::Close(made);
        out->chunks.clear();
        return false;
      }
      out->chunks.push_back(copy);
    }
    return true;
  }
  if (allocation->state != Allocation::State::kShared) return false;
  // Sealing against writes needs every writable mapping gone: ours goes first (huge pages
  // make that take microseconds), and empty memory holds its addresses until V8 frees them.
  int fd = allocation->fds[0];
  if (!os::ReplaceWithEmpty(allocation->base, allocation->mapped_length, err)) return false;
  if (!os::SealAgainstChange(fd, err)) {
    // Someone else still maps it writable (or holds its pages): put it back and copy it.
    os::Remap(allocation->base, allocation->mapped_length, fd, true, nullptr);
    return false;
  }
  allocation->fds.clear();
  allocation->state = Allocation::State::kGone;
  out->chunks.push_back(fd);
  out->handed_over = allocation;
  return true;
}

bool CopyIntoChunks(const uint8_t* data, uint64_t size, Background* background,
                    OutgoingBuffer* out, os::SystemError* err) {
  uint64_t chunk = size;
  if (size > kMinCopyChunk) {
    uint64_t share = (size + kCopyChunks - 1) / kCopyChunks;
    uint64_t aligned = (share + os::kChunkAlign - 1) / os::kChunkAlign * os::kChunkAlign;
    chunk = std::max(kMinCopyChunk, aligned);
  }
  size_t count = static_cast<size_t>((size + chunk - 1) / chunk);
  std::vector<int> fds(count, -1);
  std::vector<os::SystemError> errors(count, os::SystemError{0, nullptr});
  background->ParallelFor(count, [&](size_t i) {
    uint64_t at = i * chunk;
    os::Span part{data + at, static_cast<size_t>(std::min(chunk, size - at))};
    fds[i] = os::CreateSealedCopy(&part, 1, &errors[i]);
  });
  for (size_t i = 0; i < count; i++) {
    if (fds[i] >= 0) continue;
    *err = errors[i];
    for (int fd : fds) os::Close(fd);
    return false;
  }
  out->chunks = std::move(fds);
  return true;
}

}  // namespace

Napi::Value AllocateTransferable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto size = static_cast<size_t>(info[0].As<Napi::Number>().Int64Value());
  os::SystemError error{0, nullptr};
  int fd = os::CreateTransferableMemory(size, &error);
  if (fd < 0) return env.Null();
  size_t mapped_length = 0;
  void* base = os::MapTransferable(fd, size, &mapped_length, &error);
  if (base == nullptr) {
    os::Close(fd);
    return env.Null();
  }
  auto* allocation = new Allocation{static_cast<uint8_t*>(base), size, mapped_length, {fd},
                                    Allocation::State::kShared};
  return Wrap(env, allocation);
}

bool PrepareOutgoing(Napi::ArrayBuffer buffer, Background* background, OutgoingBuffer* out,
                     os::SystemError* err) {
  const auto* data = static_cast<const uint8_t*>(buffer.Data());
  size_t size = buffer.ByteLength();
  // (The buffer is alive and ours for the whole call: its allocation cannot go meanwhile.)
  Allocation* allocation = Find(data, size);
  if (allocation != nullptr && HandOver(allocation, out, err)) return true;
  return CopyIntoChunks(data, size, background, out, err);
}

void UndoOutgoing(OutgoingBuffer* out) {
  auto* allocation = static_cast<Allocation*>(out->handed_over);
  if (allocation != nullptr && out->chunks.size() == 1 &&
      os::Remap(allocation->base, allocation->mapped_length, out->chunks[0], false, nullptr)) {
    // Sealed now, so mapped copy-on-write: the same bytes, still writable, as if received.
    allocation->fds.push_back(out->chunks[0]);
    allocation->state = Allocation::State::kPrivate;
    out->chunks.clear();
  }
  for (int fd : out->chunks) os::Close(fd);
  out->chunks.clear();
  out->handed_over = nullptr;
}

Napi::Value AdoptIncoming(Napi::Env env, std::vector<int>* chunks) {
  uint64_t size = 0;
  size_t mapped_length = 0;
  os::SystemError error{0, nullptr};
  void* base = os::MapSealedChunks(chunks->data(), chunks->size(), kMaxIncomingSize, &size,
                                   &mapped_length, &error);
  if (base == nullptr) {
    for (int fd : *chunks) os::Close(fd);
    chunks->clear();
    return Napi::Value();
  }
  auto* allocation = new Allocation{static_cast<uint8_t*>(base), static_cast<size_t>(size),
                                    mapped_length, std::move(*chunks), Allocation::State::kPrivate};
  chunks->clear();
  return Wrap(env, allocation);
}

}  // namespace crossport
