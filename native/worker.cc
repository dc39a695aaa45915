#include "worker.h"

#include <algorithm>
#include <memory>
#include <unordered_set>
#include <uv.h>
#include <v8.h>

#include "addon.h"
#include "os.h"
#include "port.h"

namespace crossport {

namespace {

// The byte a worker process sends its parent when its heap is about to run out.
constexpr char kOutOfMemory = 'M';

struct HeapLimitWatch {
  v8::Isolate* isolate;
  int fd;
  std::shared_ptr<std::unordered_set<PortHandle*>> live_ports;
};

// V8 calls this when the heap is near its limit (--max-old-space-size): the point at which Node
// ends a worker thread with ERR_WORKER_OUT_OF_MEMORY (Worker::NearHeapLimit). We are inside a
// garbage collection, where no JavaScript may run: what ports still queue in native memory goes
// out first (as at a normal exit), then the one-byte notice, and the process ends with exit
// code 1, the code a worker thread ends with. Returning would let V8 die of a fatal OOM instead.
size_t NearHeapLimit(void* data, size_t current_heap_limit, size_t initial_heap_limit) {
  auto* watch = static_cast<HeapLimitWatch*>(data);
  for (PortHandle* port : *watch->live_ports) port->FlushBeforeExit();
  os::SendByte(watch->fd, kOutOfMemory);
  os::ExitNow(1);
}

void StopWatching(void* data) {
  auto* watch = static_cast<HeapLimitWatch*>(data);
  watch->isolate->RemoveNearHeapLimitCallback(NearHeapLimit, 0);
  os::Close(watch->fd);
  delete watch;
}

// noticePair(): [the parent's end, the end a worker process inherits] of a socket pair, both
// close-on-exec and non-blocking (the parent reads its end once the process has ended).
Napi::Value NoticePair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  os::SystemError error{0, nullptr};
  if (!os::SocketPair(fds, &error)) ThrowSystemError(env, error.errnum, error.syscall);
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, fds[0]));
  pair.Set(1u, Napi::Number::New(env, fds[1]));
  return pair;
}

// watchHeapLimit(fd): in a worker process, sends the out-of-memory notice on the inherited `fd`
// (which it takes, and marks close-on-exec) when the heap is about to run out.
Napi::Value WatchHeapLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (!os::SetCloseOnExec(fd)) ThrowSystemError(env, EBADF, "fcntl");
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  auto* watch = new HeapLimitWatch{isolate, fd, GetAddon(env)->live_ports};
  isolate->AddNearHeapLimitCallback(NearHeapLimit, watch);
  if (napi_add_env_cleanup_hook(env, StopWatching, watch) != napi_ok) {
    StopWatching(watch);
    throw Napi::Error::New(env, "crossport: cannot register a cleanup hook");
  }
  return env.Undefined();
}

// Below the JavaScript stack limit, room for native frames (Node's kStackBufferSize for a worker
// thread).
constexpr uintptr_t kNativeStackReserve = 192 * 1024;

// setStackSize(kib): lets JavaScript use the top `kib` KiB of this thread's stack, as a worker
// thread of that stack size does (Node sets its limit from the thread's stack base, not from where
// V8 started). The V8 flag --stack-size would do it too, but any V8 flag makes V8 reject Node's
// code cache, which costs a process some 10 ms to start. Returns the KiB granted (less when the
// stack, RLIMIT_STACK for the main thread, is smaller), or 0 when V8's limit stays as it was.
Napi::Value SetStackSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double kib = info[0].As<Napi::Number>().DoubleValue();
  uintptr_t low = 0;
  uintptr_t high = 0;
  if (!(kib > 0) || !os::ThreadStackBounds(&low, &high) || high - low <= 2 * kNativeStackReserve) {
    return Napi::Number::New(env, 0);
  }
  uintptr_t wanted = static_cast<uintptr_t>(kib * 1024);
  uintptr_t floor = low + kNativeStackReserve;
  uintptr_t limit = high - floor > wanted ? high - wanted : floor;
  uintptr_t here = reinterpret_cast<uintptr_t>(&low);
  if (limit >= here) return Napi::Number::New(env, 0);  // we are deeper than that already
  v8::Isolate::GetCurrent()->SetStackLimit(limit);
  return Napi::Number::New(env, static_cast<double>(high - limit) / 1024);
}

// setParentDeathSignal(signal): true when the kernel will send it once the parent is gone.
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  int signal = info[0].As<Napi::Number>().Int32Value();
  return Napi::Boolean::New(info.Env(), os::SetParentDeathSignal(signal));
}

// heapLimits(): [this isolate's heap limit, the young generation V8 gives a heap by default], in
// bytes. V8 reports only the limit (old + young generation); the default young generation is what
// Node's Worker reports for a thread given no limits (ResourceConstraints::ConfigureDefaults with
// the memory Node tells V8 about, as SetIsolateCreateParamsForNode), and what a process started
// without heap flags has.
Napi::Value HeapLimits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  v8::HeapStatistics statistics;
  v8::Isolate::GetCurrent()->GetHeapStatistics(&statistics);
  uint64_t memory = uv_get_total_memory();
  uint64_t constrained = uv_get_constrained_memory();
  if (constrained > 0) memory = std::min(memory, constrained);
  v8::ResourceConstraints defaults;
  if (memory > 0) defaults.ConfigureDefaults(memory, 0);
  Napi::Array limits = Napi::Array::New(env, 2);
  limits.Set(0u, Napi::Number::New(env, static_cast<double>(statistics.heap_size_limit())));
  limits.Set(1u, Napi::Number::New(env, static_cast<double>(defaults.max_young_generation_size_in_bytes())));
  return limits;
}

}  // namespace

void DefineWorker(Napi::Env env, Napi::Object exports) {
  exports.Set("noticePair", Napi::Function::New(env, NoticePair, "noticePair"));
  exports.Set("watchHeapLimit", Napi::Function::New(env, WatchHeapLimit, "watchHeapLimit"));
  exports.Set("setStackSize", Napi::Function::New(env, SetStackSize, "setStackSize"));
  exports.Set("heapLimits", Napi::Function::New(env, HeapLimits, "heapLimits"));
  exports.Set("setParentDeathSignal",
              Napi::Function::New(env, SetParentDeathSignal, "setParentDeathSignal"));
}

}  // namespace crossport
