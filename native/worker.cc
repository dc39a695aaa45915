#include "worker.h"

#include <memory>
#include <unordered_set>
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

// setParentDeathSignal(signal): true when the kernel will send it once the parent is gone.
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  int signal = info[0].As<Napi::Number>().Int32Value();
  return Napi::Boolean::New(info.Env(), os::SetParentDeathSignal(signal));
}

}  // namespace

void DefineWorker(Napi::Env env, Napi::Object exports) {
  exports.Set("noticePair", Napi::Function::New(env, NoticePair, "noticePair"));
  exports.Set("watchHeapLimit", Napi::Function::New(env, WatchHeapLimit, "watchHeapLimit"));
  exports.Set("setParentDeathSignal",
              Napi::Function::New(env, SetParentDeathSignal, "setParentDeathSignal"));
}

}  // namespace crossport
