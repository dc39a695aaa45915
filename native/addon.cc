// Module entry: builds the per-environment Addon and exports the native interface that
// lib/native.ts types (createChannel, adopt, newPortObject, setup, PortHandle).
#include "addon.h"

#include <cstdlib>
#include <memory>

#include "handoff.h"
#include "link.h"
#include "message.h"
#include "port.h"
#include "rendezvous.h"
#include "segment.h"
#include "transferable.h"

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

// adopt(segmentFd, socketFd, side): a port from fds this process inherited.
Napi::Value Adopt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LinkState state;
  state.segment_fd = info[0].As<Napi::Number>().Int32Value();
  state.socket_fd = info[1].As<Napi::Number>().Int32Value();
  state.side = info[2].As<Napi::Number>().Int32Value();
  if (state.side != 0 && state.side != 1) throw Napi::RangeError::New(env, "side must be 0 or 1");
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

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* addon = new Addon();
  env.SetInstanceData<Addon>(addon);
  if (const char* window = getenv("CROSSPORT_POLL_WINDOW_US")) {
    addon->max_poll_window_ns = strtoull(window, nullptr, 10) * 1000;
  }
  if (napi_get_uv_event_loop(env, &addon->loop) != napi_ok) {
    throw Napi::Error::New(env, "crossport: no event loop");
  }
  Napi::Function port_handle = PortHandle::Define(env);
  addon->port_handle_class = Napi::Persistent(port_handle);
  exports.Set("PortHandle", port_handle);
  exports.Set("setup", Napi::Function::New(env, Setup, "setup"));
  exports.Set("stop", Napi::Function::New(env, Stop, "stop"));
  exports.Set("fileHandlesReady", Napi::Function::New(env, FileHandlesReady, "fileHandlesReady"));
  exports.Set("createChannel", Napi::Function::New(env, CreateChannel, "createChannel"));
  exports.Set("adopt", Napi::Function::New(env, Adopt, "adopt"));
  exports.Set("takeOver", Napi::Function::New(env, TakeOver, "takeOver"));
  exports.Set("newPortObject", Napi::Function::New(env, NewPort, "newPortObject"));
  exports.Set("allocateTransferable",
              Napi::Function::New(env, AllocateTransferable, "allocateTransferable"));
  DefineRendezvous(env, exports);
  return exports;
}

Addon* GetAddon(Napi::Env env) { return env.GetInstanceData<Addon>(); }

bool CanCallJavaScript(Napi::Env env) {
  return !GetAddon(env)->stopping && !v8::Isolate::GetCurrent()->IsExecutionTerminating();
}

void ThrowSystemError(Napi::Env env, int errnum, const char* syscall) {
  const char* code = uv_err_name(-errnum);
  std::string message = std::string(syscall) + " " + code;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", code);
  error.Set("errno", Napi::Number::New(env, -errnum));
  error.Set("syscall", syscall);
  throw error;
}

}  // namespace crossport

static Napi::Object InitCrossport(Napi::Env env, Napi::Object exports) {
  return crossport::Init(env, exports);
}
NODE_API_MODULE(crossport, InitCrossport)
