// Per-environment state of the addon (set with Env::SetInstanceData): no mutable globals, so
// the addon works in worker threads and when loaded twice.
#pragma once

#include <napi.h>

#include <deque>
#include <functional>
#include <set>
#include <memory>
#include <unordered_set>
#include <uv.h>
#include <v8.h>

#include "background.h"
#include "poll_window.h"
#include "serializer.h"

namespace crossport {

class PortHandle;

struct Addon {
  CloneEnvironment clone;
  uv_loop_t* loop = nullptr;
  v8::Global<v8::ObjectTemplate> port_template;
  Napi::FunctionReference port_handle_class;
  // JS hooks registered by lib/ (see lib/native.ts, Hooks).
  Napi::FunctionReference on_message;       // (port, data, ports) => void
  Napi::FunctionReference deliver;          // (port) => void: dispatches a batch (see Dispatch)
  Napi::FunctionReference on_message_error;  // (port, error) => void
  Napi::FunctionReference on_close;         // (port) => void
  Napi::FunctionReference on_drain;         // (port) => void: the send queue emptied
  Napi::FunctionReference create_port;      // (handle) => port
  Napi::FunctionReference create_handles;   // (kinds, fds) => objects (lib owns the fds)
  Napi::FunctionReference discard_handles;  // (objects) => void: closes them
  Napi::FunctionReference load_file_handles;  // () => void: fileHandlesReady() follows
  Napi::FunctionReference allocate;  // (size) => a new ArrayBuffer, its memory not zeroed
  bool file_handles_ready = false;
  std::set<PortHandle*> waiting_for_file_handles;
  Napi::ObjectReference empty;              // what receive() returns when nothing waits
  Napi::ObjectReference handled;            // what next() returns for a message it delivered
  // The longest poll window (port.cc); CROSSPORT_POLL_WINDOW_US overrides it, 0 turns polling off.
  uint64_t max_poll_window_ns = 100 * 1000;
  CpuContention cpu_contention;             // closes every port's poll window while CPUs are taken
  Background background;                    // copies and frees of large transferred buffers
  bool stopping = false;                    // set at process 'exit': JS can no longer run
  // Every live PortHandle (see PortHandle::FlushBeforeExit).
  std::shared_ptr<std::unordered_set<PortHandle*>> live_ports =
      std::make_shared<std::unordered_set<PortHandle*>>();
  // Ports whose peer ended, in order: their 'close' events are scheduled on the next loop turn
  // by `close_events` (see PortHandle::QueueClose). Shared with the ports, like live_ports.
  std::shared_ptr<std::deque<PortHandle*>> close_queue =
      std::make_shared<std::deque<PortHandle*>>();
  uv_idle_t* close_events = nullptr;
  // Referenced while drain_waiters > 0: ports awaited for 'drain' (PortHandle::UpdateLoopHold).
  uv_async_t* drain_hold = nullptr;
  int drain_waiters = 0;

  Addon() = default;
  Addon(const Addon&) = delete;
  Addon& operator=(const Addon&) = delete;
  ~Addon();
};

// Default ring size per direction: large enough to pipeline many small messages, small enough
// that an idle channel costs little (pages are only committed once touched).
constexpr uint64_t kDefaultRingCapacity = 1 << 19;
// The large rings (messages over 1/8 of the small ring): up to half of this per message.
// Address space only until large messages flow; then pages stay committed.
constexpr uint64_t kDefaultLargeRingCapacity = 1 << 23;

Addon* GetAddon(Napi::Env env);
// False once the environment is exiting or its thread is being terminated
// (worker.terminate()): from then on no callback may call into JavaScript.
bool CanCallJavaScript(Napi::Env env);
// For callbacks from libuv: a JS exception from `body` becomes an uncaught exception, as Node
// reports errors from its own callbacks (dropped when the environment is going).
template <typename Body>
void RunFromEventLoop(Napi::Env env, Body&& body) {
  try {
    body();
  } catch (const Napi::Error& error) {
    if (CanCallJavaScript(env)) napi_fatal_exception(env, error.Value());
  }
}
// The async context a native object's callbacks run in, as Node's own handles (AsyncWrap) keep
// it: an async id, the object's JS side as the resource (executionAsyncResource()), and the
// AsyncLocalStorage frame current when the object was made (from Node 24 on, AsyncLocalStorage
// keeps its stores in V8's continuation-preserved embedder data, which napi_async_init does not
// capture). Node's C++ API rather than napi_async_init: from Node 26 that holds its resource
// strongly until napi_async_destroy (nodejs/node#59828), so a port, its own resource, could never
// be collected. Here the resource is named again by each Scope, and held by nobody.
class CallbackContext {
 public:
  CallbackContext(Napi::Env env, const char* name, Napi::Object resource);
  ~CallbackContext();
  CallbackContext(const CallbackContext&) = delete;
  CallbackContext& operator=(const CallbackContext&) = delete;

  // Runs `body` in the context, with `resource` as its resource: inside a node::CallbackScope
  // (nextTicks and microtasks run as it closes), with the frame current.
  void Run(Napi::Object resource, const std::function<void()>& body) const;

 private:
  void* node_env_;  // node::Environment (node.h stays out of the headers: it redefines NAPI_VERSION)
  double async_id_;
  double trigger_async_id_;
  v8::Global<v8::Data> frame_;
};

// Calls `function(arg)` with `recv` from the event loop as Node calls its own callbacks: inside a
// callback scope of `context` whose resource is `recv` (the listener runs in that async context; nextTicks and microtasks
// run as the scope closes). An exception that escapes is reported the way Node reports one from its
// own callbacks — 'uncaughtException' (or the error printed and exit code 1, or an abort with
// --abort-on-uncaught-exception) — while the scope is still open: reporting it empties the async
// id stack, so a nextTick that threw inside `function` and left its async context pushed cannot
// make the scope's close fail (see InternalCallbackScope::Close and TriggerUncaughtException in
// Node's src/). False when it threw or JavaScript cannot run.
bool CallFromEventLoop(Napi::Env env, const CallbackContext& context, Napi::Object recv,
                       Napi::Function function, napi_value arg);
Napi::Object Init(Napi::Env env, Napi::Object exports);

// An Error with a Node-style errno `code` and `syscall`; and throwing one.
Napi::Error NewSystemError(Napi::Env env, int errnum, const char* syscall);
[[noreturn]] void ThrowSystemError(Napi::Env env, int errnum, const char* syscall);

}  // namespace crossport
