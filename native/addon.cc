// Module entry: builds the per-environment Addon and exports the native interface that
// lib/native.ts types (createChannel, adopt, newPortObject, setup, PortHandle).
#include "addon.h"

// NODE_MODULE_VERSION, NODE_VERSION. Node 20's node_version.h also defines NAPI_VERSION (the
// runtime's), which napi.h has already chosen for this addon: keep napi.h's.
#pragma push_macro("NAPI_VERSION")
#undef NAPI_VERSION
#include <node.h>
#include <node_version.h>
#undef NAPI_VERSION
#pragma pop_macro("NAPI_VERSION")

#include <dlfcn.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "clone.h"
#include "handoff.h"
#include "link.h"
#include "message.h"
#include "port.h"
#include "rendezvous.h"
#include "segment.h"
#include "transferable.h"
#include "worker.h"

namespace crossport {

namespace {

Napi::Value Setup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Addon* addon = GetAddon(env);
  Napi::Object hooks = info[0].As<Napi::Object>();
  addon->on_message = Napi::Persistent(hooks.Get("message").As<Napi::Function>());
  addon->deliver = Napi::Persistent(hooks.Get("deliver").As<Napi::Function>());
  addon->on_drain = Napi::Persistent(hooks.Get("drain").As<Napi::Function>());
  addon->on_message_error = Napi::Persistent(hooks.Get("messageerror").As<Napi::Function>());
  addon->on_close = Napi::Persistent(hooks.Get("close").As<Napi::Function>());
  addon->create_port = Napi::Persistent(hooks.Get("createPort").As<Napi::Function>());
  addon->create_handles = Napi::Persistent(hooks.Get("createHandles").As<Napi::Function>());
  addon->discard_handles = Napi::Persistent(hooks.Get("discardHandles").As<Napi::Function>());
  addon->load_file_handles = Napi::Persistent(hooks.Get("loadFileHandles").As<Napi::Function>());
  addon->allocate = Napi::Persistent(hooks.Get("allocate").As<Napi::Function>());
  addon->empty = Napi::Persistent(hooks.Get("empty").As<Napi::Object>());
  addon->handled = Napi::Persistent(hooks.Get("handled").As<Napi::Object>());
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::Local<v8::Value> dom_exception;
  napi_value raw = hooks.Get("DOMException");
  memcpy(static_cast<void*>(&dom_exception), &raw, sizeof raw);
  addon->clone.dom_exception.Reset(isolate, dom_exception.As<v8::Function>());
  v8::Local<v8::Value> missing_transferable;
  raw = hooks.Get("missingTransferable");
  memcpy(static_cast<void*>(&missing_transferable), &raw, sizeof raw);
  addon->clone.missing_transferable.Reset(isolate, missing_transferable.As<v8::Function>());
  addon->clone.context.Reset(isolate, isolate->GetCurrentContext());
  return env.Undefined();
}

Napi::Value Stop(const Napi::CallbackInfo& info) {
  Addon* addon = GetAddon(info.Env());
  addon->stopping = true;
  // The event loop will not run again: what ports still queue must go out now, or never.
  // (Messages already in a ring need nothing: the peer reads them from shared memory.)
  for (PortHandle* port : *addon->live_ports) port->FlushBeforeExit();
  return info.Env().Undefined();
}

// lib/ can now make FileHandles: messages that waited for that are delivered.
Napi::Value FileHandlesReady(const Napi::CallbackInfo& info) {
  Addon* addon = GetAddon(info.Env());
  addon->file_handles_ready = true;
  std::set<PortHandle*> waiting;
  waiting.swap(addon->waiting_for_file_handles);
  for (PortHandle* port : waiting) port->Resume();
  return info.Env().Undefined();
}

// closeFd(fd): closes a descriptor the addon made. (In a worker thread, fs.closeSync warns about
// one that fs did not open there: "closed but not opened in unmanaged mode".)
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  os::Close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value CreateChannel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Addon* addon = GetAddon(env);
  uint64_t capacity = kDefaultRingCapacity;
  if (info.Length() > 0 && info[0].IsNumber()) {
    capacity = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  }
  os::SystemError error{0, nullptr};
  std::unique_ptr<Segment> first(Segment::Create(capacity, kDefaultLargeRingCapacity, &error));
  if (!first) ThrowSystemError(env, error.errnum, error.syscall);
  int second_fd = os::Duplicate(first->fd(), &error);
  if (second_fd < 0) ThrowSystemError(env, error.errnum, error.syscall);
  std::unique_ptr<Segment> second(Segment::Adopt(second_fd, &error));
  if (!second) {
    os::Close(second_fd);
    ThrowSystemError(env, error.errnum, error.syscall);
  }
  int sockets[2];
  if (!os::SocketPair(sockets, &error)) ThrowSystemError(env, error.errnum, error.syscall);
  Napi::Array handles = Napi::Array::New(env, 2);
  handles.Set(0u, PortHandle::New(env, new Link(std::move(first), sockets[0], 0, addon->loop,
                                                nullptr)));
  handles.Set(1u, PortHandle::New(env, new Link(std::move(second), sockets[1], 1, addon->loop,
                                                nullptr)));
  return handles;
}

// adopt(segmentFd, socketFd, side[, parentPid]): a port from fds this process inherited. With
// parentPid, the fds are first checked to be a link's (a unix SOCK_SEQPACKET socket whose pair
// that process made, and a segment), reading them only: null when they are not, and nothing
// was done to them.
Napi::Value Adopt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LinkState state;
  state.segment_fd = info[0].As<Napi::Number>().Int32Value();
  state.socket_fd = info[1].As<Napi::Number>().Int32Value();
  state.side = info[2].As<Napi::Number>().Int32Value();
  if (state.side != 0 && state.side != 1) throw Napi::RangeError::New(env, "side must be 0 or 1");
  if (info.Length() > 3 && info[3].IsNumber()) {
    os::PeerCredentials peer{};
    int parent = info[3].As<Napi::Number>().Int32Value();
    if (!os::InspectLinkSocket(state.socket_fd, &peer) || (peer.pid != parent && peer.pid != -1) ||
        !Segment::IsSegment(state.segment_fd)) {
      return env.Null();
    }
  }
  for (int fd : {state.segment_fd, state.socket_fd}) {
    if (!os::SetCloseOnExec(fd)) ThrowSystemError(env, EBADF, "fcntl");
  }
  os::SystemError error{0, nullptr};
  Link* link = Link::FromState(&state, GetAddon(env)->loop, nullptr, &error);
  if (link == nullptr) ThrowSystemError(env, error.errnum, error.syscall);
  return PortHandle::New(env, link);
}

// takeOver(id): the port another thread of this process handed off (PortHandle.handOff).
Napi::Value TakeOver(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LinkState state;
  if (!WithdrawPort(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()), &state)) {
    return env.Null();
  }
  os::SystemError error{0, nullptr};
  Link* link = Link::FromState(&state, GetAddon(env)->loop, nullptr, &error);
  if (link == nullptr) {
    CloseLinkState(&state);
    ThrowSystemError(env, error.errnum, error.syscall);
  }
  return PortHandle::New(env, link);
}

Napi::Value NewPort(const Napi::CallbackInfo& info) {
  return NewPortObject(info.Env(), &GetAddon(info.Env())->port_template);
}

// This binary calls the V8 API, which changes from one Node ABI (NODE_MODULE_VERSION) to the
// next, and Node skips its own ABI check for a Node-API module: built for another Node, it would
// die at its first V8 call (`symbol lookup error`, exit 127) or, worse, run on a different
// layout. So it checks first, with Node-API calls only (stable across Nodes), before anything
// touches V8, and refuses with the error Node gives a native module of another ABI.
void RefuseOtherNodeAbi(Napi::Env env) {
  Napi::Object versions =
      env.Global().Get("process").As<Napi::Object>().Get("versions").As<Napi::Object>();
  std::string running = versions.Get("modules").ToString().Utf8Value();
  std::string built = std::to_string(NODE_MODULE_VERSION);
  if (running == built) return;
  std::string node = versions.Get("node").ToString().Utf8Value();
  Napi::Error error = Napi::Error::New(
      env, "crossport-ipc: the native addon was built for Node.js " NODE_VERSION
           " (NODE_MODULE_VERSION " + built + "), but this is Node.js v" + node +
           " (NODE_MODULE_VERSION " + running + "). Run `npm rebuild crossport-ipc` to build "
           "it for this Node.js.");
  error.Set("code", "ERR_DLOPEN_FAILED");
  throw error;
}

// Node unloads an addon with the last environment that loaded it: a worker thread that alone
// required crossport unloads it as it ends, before that thread's loop has run the close callbacks
// of the addon's libuv handles (and while background threads may still be freeing memory), which
// then jump into unmapped code. The addon stays loaded for the life of the process instead.
void StayLoaded() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&StayLoaded), &info) != 0 && info.dli_fname != nullptr) {
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  }
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  RefuseOtherNodeAbi(env);
  StayLoaded();
  auto* addon = new Addon();
  env.SetInstanceData<Addon>(addon);
  if (const char* window = getenv("CROSSPORT_POLL_WINDOW_US")) {
    addon->max_poll_window_ns = strtoull(window, nullptr, 10) * 1000;
  }
  if (napi_get_uv_event_loop(env, &addon->loop) != napi_ok) {
    throw Napi::Error::New(env, "crossport: no event loop");
  }
  addon->close_events = new uv_idle_t;
  uv_idle_init(addon->loop, addon->close_events);
  addon->close_events->data = addon->close_queue.get();
  addon->drain_hold = new uv_async_t;
  uv_async_init(addon->loop, addon->drain_hold, [](uv_async_t*) {});
  uv_unref(reinterpret_cast<uv_handle_t*>(addon->drain_hold));
  Napi::Function port_handle = PortHandle::Define(env);
  addon->port_handle_class = Napi::Persistent(port_handle);
  exports.Set("PortHandle", port_handle);
  exports.Set("setup", Napi::Function::New(env, Setup, "setup"));
  exports.Set("stop", Napi::Function::New(env, Stop, "stop"));
  exports.Set("fileHandlesReady", Napi::Function::New(env, FileHandlesReady, "fileHandlesReady"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("createChannel", Napi::Function::New(env, CreateChannel, "createChannel"));
  exports.Set("adopt", Napi::Function::New(env, Adopt, "adopt"));
  exports.Set("takeOver", Napi::Function::New(env, TakeOver, "takeOver"));
  exports.Set("newPortObject", Napi::Function::New(env, NewPort, "newPortObject"));
  exports.Set("allocateTransferable",
              Napi::Function::New(env, AllocateTransferable, "allocateTransferable"));
  DefineRendezvous(env, exports);
  DefineWorker(env, exports);
  DefineClone(env, exports);
  return exports;
}

Addon::~Addon() {
  if (close_events != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(close_events),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_idle_t*>(handle); });
  }
  if (drain_hold != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(drain_hold),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_async_t*>(handle); });
  }
}

Addon* GetAddon(Napi::Env env) { return env.GetInstanceData<Addon>(); }

bool CanCallJavaScript(Napi::Env env) {
  if (GetAddon(env)->stopping || v8::Isolate::GetCurrent()->IsExecutionTerminating()) return false;
  // Node refuses calls into JavaScript once its environment stops (a worker being terminated,
  // after the termination itself has unwound): each Node-API function that may run JavaScript
  // checks that first. napi_strict_equals is one of them, and runs none.
  napi_value undefined;
  bool same;
  return napi_get_undefined(env, &undefined) == napi_ok &&
         napi_strict_equals(env, undefined, undefined, &same) == napi_ok;
}

// The current AsyncLocalStorage frame (V8 12 and 13 type it as a Value, 14 as Data). Node 20's
// AsyncLocalStorage keeps its stores on the async resource, which the AsyncContext restores.
static v8::Local<v8::Data> CurrentFrame(v8::Isolate* isolate) {
#if V8_MAJOR_VERSION >= 14
  return isolate->GetContinuationPreservedEmbedderDataV2();
#elif V8_MAJOR_VERSION >= 12
  return isolate->GetContinuationPreservedEmbedderData();
#else
  return v8::Undefined(isolate);
#endif
}

static void SetCurrentFrame(v8::Isolate* isolate, v8::Local<v8::Data> frame) {
#if V8_MAJOR_VERSION >= 14
  isolate->SetContinuationPreservedEmbedderDataV2(frame);
#elif V8_MAJOR_VERSION >= 12
  isolate->SetContinuationPreservedEmbedderData(frame.As<v8::Value>());
#else
  (void)isolate, (void)frame;
#endif
}

CallbackContext::CallbackContext(Napi::Env, const char* name, Napi::Object resource) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  node_env_ = node::GetCurrentEnvironment(isolate->GetCurrentContext());
  node::async_context async = node::EmitAsyncInit(isolate, ToV8(resource).As<v8::Object>(), name);
  async_id_ = async.async_id;
  trigger_async_id_ = async.trigger_async_id;
  frame_.Reset(isolate, CurrentFrame(isolate));
}

// (May run in a finalizer, with no current context: hence the Environment kept.)
CallbackContext::~CallbackContext() {
  node::EmitAsyncDestroy(static_cast<node::Environment*>(node_env_), {async_id_, trigger_async_id_});
}

void CallbackContext::Run(Napi::Object resource, const std::function<void()>& body) const {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  node::CallbackScope scope(isolate, ToV8(resource).As<v8::Object>(), {async_id_, trigger_async_id_});
  struct FrameScope {  // (body may throw a Napi::Error)
    v8::Isolate* isolate;
    v8::Local<v8::Data> prior;
    ~FrameScope() { SetCurrentFrame(isolate, prior); }
  } frame{isolate, CurrentFrame(isolate)};
  SetCurrentFrame(isolate, frame_.Get(isolate));
  body();
}

bool CallFromEventLoop(Napi::Env env, const CallbackContext& context, Napi::Object recv,
                       Napi::Function function, napi_value arg) {
  if (!CanCallJavaScript(env)) return false;
  // node::CallbackScope, whose TryCatch is verbose: an exception reaching it goes to Node's
  // message listener (TriggerUncaughtException) before the call returns, and marks the scope
  // failed (no 'after' hook, no tick processing), as for Node's timers. Called through V8
  // rather than napi_call_function, whose own (silent) TryCatch would catch it first.
  bool called = false;
  context.Run(recv, [&] {
    v8::Isolate* isolate = v8::Isolate::GetCurrent();
    v8::Local<v8::Value> argv[1] = {ToV8(arg)};
    called = !ToV8(function).As<v8::Function>()->Call(isolate->GetCurrentContext(), ToV8(recv), 1,
                                                       argv).IsEmpty();
  });
  return called;
}

Napi::Error NewSystemError(Napi::Env env, int errnum, const char* syscall) {
  const char* code = uv_err_name(-errnum);
  std::string message = std::string(syscall) + " " + code;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", code);
  error.Set("errno", Napi::Number::New(env, -errnum));
  error.Set("syscall", syscall);
  return error;
}

void ThrowSystemError(Napi::Env env, int errnum, const char* syscall) {
  throw NewSystemError(env, errnum, syscall);
}

}  // namespace crossport

static Napi::Object InitCrossport(Napi::Env env, Napi::Object exports) {
  return crossport::Init(env, exports);
}
NODE_API_MODULE(crossport, InitCrossport)
