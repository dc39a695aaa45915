#include "port.h"

#include "addon.h"
#include "message.h"
#include "serializer.h"

namespace crossport {

namespace {

// Messages dispatched per loop turn before other I/O gets a chance (as Node does).
constexpr int kDispatchBatch = 1000;

// At exit, how long a port waits for a reader that makes no room before it gives up on the
// messages still queued (a peer that does not read must not hold the process forever).
constexpr int kExitStallMs = 2000;

}  // namespace

Napi::Function PortHandle::Define(Napi::Env env) {
  return DefineClass(env, "PortHandle",
                     {
                         InstanceMethod("setOwner", &PortHandle::SetOwner),
                         InstanceMethod("post", &PortHandle::Post),
                         InstanceMethod("receive", &PortHandle::Receive),
                         InstanceMethod("start", &PortHandle::Start),
                         InstanceMethod("stop", &PortHandle::Stop),
                         InstanceMethod("ref", &PortHandle::Ref),
                         InstanceMethod("unref", &PortHandle::Unref),
                         InstanceMethod("hasRef", &PortHandle::HasRef),
                         InstanceMethod("close", &PortHandle::Close),
                         InstanceMethod("exportFds", &PortHandle::ExportFds),
                         InstanceMethod("dispose", &PortHandle::Dispose),
                     });
}

Napi::Object PortHandle::New(Napi::Env env, Link* link) {
  return GetAddon(env)->port_handle_class.New({Napi::External<Link>::New(env, link)});
}

PortHandle* PortHandle::Unwrap(Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  Napi::Object object = value.As<Napi::Object>();
  if (!object.InstanceOf(GetAddon(value.Env())->port_handle_class.Value())) return nullptr;
  return Napi::ObjectWrap<PortHandle>::Unwrap(object);
}

PortHandle::PortHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PortHandle>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(env, "Illegal constructor");
  }
  link_ = info[0].As<Napi::External<Link>>().Data();
  link_->set_client(this);
  async_context_ = new Napi::AsyncContext(env, "crossport:MessagePort");
  idle_ = new uv_idle_t;
  uv_idle_init(GetAddon(env)->loop, idle_);
  idle_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(idle_));
  live_ = GetAddon(env)->live_ports;
  live_->insert(this);
}

PortHandle::~PortHandle() {
  live_->erase(this);
  DestroyLink();
  uv_idle_stop(idle_);
  uv_close(reinterpret_cast<uv_handle_t*>(idle_),
           [](uv_handle_t* handle) { delete reinterpret_cast<uv_idle_t*>(handle); });
  delete async_context_;
}

void PortHandle::DestroyLink() {
  if (link_ == nullptr) return;
  link_->Destroy();
  link_ = nullptr;
}

Napi::Value PortHandle::SetOwner(const Napi::CallbackInfo& info) {
  owner_ = Napi::Weak(info[0].As<Napi::Object>());
  return info.Env().Undefined();
}

void PortHandle::UpdateOwnerHold() {
  // Keep the JS port alive while it listens or owes a 'close' event, as a libuv handle would.
  bool hold = (started_ && state_ == State::kOpen) || pending_close_;
  if (hold == owner_held_ || owner_.IsEmpty()) return;
  owner_held_ = hold;
  if (hold) {
    owner_.Ref();
  } else {
    owner_.Unref();
  }
}

Napi::Value PortHandle::Post(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Addon* addon = GetAddon(env);
  Napi::Array port_list = info[1].As<Napi::Array>();
  Napi::Array handle_list = info[2].As<Napi::Array>();
  Napi::Array buffer_list = info[3].As<Napi::Array>();
  if (port_list.Length() > kMaxPortsPerMessage) {
    v8::Isolate* isolate = v8::Isolate::GetCurrent();
    ThrowDataCloneError(&addon->clone,
                        v8::String::NewFromUtf8Literal(isolate, "Too many MessagePorts in transfer list"));
    return Napi::Value();
  }
  std::vector<Napi::Object> ports;
  for (uint32_t i = 0; i < port_list.Length(); i++) {
    ports.push_back(port_list.Get(i).As<Napi::Object>());
  }
  SerializedMessage message;
  if (!Serialize(&addon->clone, info[0], ports, &message)) {
    return Napi::Value();  // the DataCloneError is pending; nothing was sent or detached
  }
  std::vector<LinkState> states(handle_list.Length());
  for (uint32_t i = 0; i < handle_list.Length(); i++) {
    PortHandle* handle = Unwrap(handle_list.Get(i));
    if (handle != nullptr) handle->ReleaseTo(&states[i]);
  }
  bool sent = false;
  if (state_ == State::kOpen && link_ != nullptr) {
    std::vector<int> fds;
    std::vector<uint8_t> head = EncodeMessageHead(&states, &fds);
    os::SystemError error{0, nullptr};
    sent = link_->Send(RecordType::kMessage, head.data(), head.size(), message.data(),
                       message.size(), std::move(fds), &error);
    if (link_->peer_gone() || link_->broken()) {
      // The send found the peer gone (EPIPE) or our ring corrupt, and the link stopped polling:
      // no socket event will come to tell us. Look again next turn, to deliver what is left
      // and emit 'close'.
      pending_dispatch_ = true;
      ScheduleIdle();
    }
    if (!sent && error.syscall != nullptr) ThrowSystemError(env, error.errnum, error.syscall);
  } else {
    for (LinkState& state : states) CloseLinkState(&state);
  }
  for (uint32_t i = 0; i < buffer_list.Length(); i++) {
    Napi::Value buffer = buffer_list.Get(i);
    if (buffer.IsArrayBuffer()) buffer.As<Napi::ArrayBuffer>().Detach();
  }
  return Napi::Boolean::New(env, sent);
}

bool PortHandle::ReleaseTo(LinkState* state) {
  if (state_ != State::kOpen || link_ == nullptr) return false;
  link_->Release(state);
  // The old port object is neutered; like worker_threads, it still gets 'close'.
  End(State::kReleased, true);
  return true;
}

bool PortHandle::Decode(IncomingRecord* record, Napi::Value* data, Napi::Value* port_array) {
  Napi::Env env = Env();
  Addon* addon = GetAddon(env);
  std::vector<LinkState> states;
  size_t body = 0;
  if (!DecodeMessageHead(record->data(), record->size(), &record->fds, &states, &body)) {
    *data = NewDataCloneError(&addon->clone, env, "Unable to deserialize cloned data.");
    return false;
  }
  // Rebuild every link first, so that a bad one fails the message before any port exists.
  std::vector<Link*> links;
  for (LinkState& state : states) {
    os::SystemError error{0, nullptr};
    Link* link = Link::FromState(&state, addon->loop, nullptr, &error);
    if (link == nullptr) break;
    links.push_back(link);
  }
  if (links.size() != states.size()) {
    for (Link* link : links) link->Destroy();
    for (LinkState& state : states) CloseLinkState(&state);
    *data = NewDataCloneError(&addon->clone, env, "Unable to deserialize cloned data.");
    return false;
  }
  std::vector<Napi::Object> ports;
  std::vector<PortHandle*> handles;
  // Most messages carry no port: they get `undefined` rather than a new empty array.
  *port_array = env.Undefined();
  if (!links.empty()) {
    Napi::Array array = Napi::Array::New(env, links.size());
    for (Link* link : links) {
      Napi::Object handle = New(env, link);
      handles.push_back(Napi::ObjectWrap<PortHandle>::Unwrap(handle));
      Napi::Object port = addon->create_port.Call({handle}).As<Napi::Object>();
      array.Set(static_cast<uint32_t>(ports.size()), port);
      ports.push_back(port);
    }
    *port_array = array;
  }
  bool failed = false;
  *data = Deserialize(&addon->clone, env, record->data() + body, record->size() - body, ports,
                      &failed);
  if (failed) {
    // Nobody will ever see these ports: close them now, so their peers learn it at once.
    for (PortHandle* handle : handles) handle->Abandon();
  }
  return !failed;
}

void PortHandle::Abandon() {
  End(State::kClosed, false);
  close_emitted_ = true;
}

Napi::Value PortHandle::Receive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Addon* addon = GetAddon(env);
  if (state_ != State::kOpen || link_ == nullptr) return addon->empty.Value();
  IncomingRecord record;
  NextStatus status = link_->Next(&record);
  if (status == NextStatus::kEmpty) return addon->empty.Value();
  if (status == NextStatus::kBroken || record.type == RecordType::kClose) {
    Finish();
    return addon->empty.Value();
  }
  Napi::Value data;
  Napi::Value ports;
  if (!Decode(&record, &data, &ports)) throw Napi::Error(env, data);
  return data;
}

Napi::Value PortHandle::Start(const Napi::CallbackInfo& info) {
  SetStarted(true);
  return info.Env().Undefined();
}

Napi::Value PortHandle::Stop(const Napi::CallbackInfo& info) {
  SetStarted(false);
  return info.Env().Undefined();
}

void PortHandle::SetStarted(bool started) {
  if (started_ == started || state_ != State::kOpen) return;
  started_ = started;
  UpdateOwnerHold();
  // Next turn: starting delivers what waits; stopping still looks for a close that waits
  // behind the last message read.
  pending_dispatch_ = true;
  ScheduleIdle();
}

void PortHandle::End(State next, bool emit_close) {
  if (next != State::kClosing) DestroyLink();
  state_ = next;
  started_ = false;
  pending_close_ = pending_close_ || emit_close;
  UpdateOwnerHold();
  if (emit_close) ScheduleIdle();
}

Napi::Value PortHandle::Ref(const Napi::CallbackInfo& info) {
  if (link_ != nullptr && state_ == State::kOpen) link_->Ref();
  return info.Env().Undefined();
}

Napi::Value PortHandle::Unref(const Napi::CallbackInfo& info) {
  if (link_ != nullptr && state_ == State::kOpen) link_->Unref();
  return info.Env().Undefined();
}

Napi::Value PortHandle::HasRef(const Napi::CallbackInfo& info) {
  bool ref = link_ != nullptr && state_ == State::kOpen && link_->HasRef();
  return Napi::Boolean::New(info.Env(), ref);
}

Napi::Value PortHandle::Close(const Napi::CallbackInfo& info) {
  if (state_ == State::kOpen) {
    os::SystemError error{0, nullptr};
    // Queued behind every message posted before it, so the peer receives those first.
    link_->Send(RecordType::kClose, nullptr, 0, nullptr, 0, {}, &error);
    if (link_->has_overflow() && !link_->peer_gone() && !link_->broken()) {
      // Stay alive until the overflow is written (OnLinkEvent), then let go of the link.
      link_->Ref();
      End(State::kClosing, true);
    } else {
      End(State::kClosed, true);
    }
  }
  return info.Env().Undefined();
}

Napi::Value PortHandle::ExportFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (state_ != State::kOpen || link_ == nullptr) {
    throw Napi::Error::New(env, "The port is closed");
  }
  int segment_fd, socket_fd;
  os::SystemError error{0, nullptr};
  if (!link_->DuplicateFds(&segment_fd, &socket_fd, &error)) {
    ThrowSystemError(env, error.errnum, error.syscall);
  }
  Napi::Array fds = Napi::Array::New(env, 3);
  fds.Set(0u, segment_fd);
  fds.Set(1u, socket_fd);
  fds.Set(2u, link_->side());
  return fds;
}

Napi::Value PortHandle::Dispose(const Napi::CallbackInfo& info) {
  // This side now lives elsewhere (its fds were exported): let go without a close record.
  End(State::kReleased, false);
  return info.Env().Undefined();
}

void PortHandle::OnLinkEvent() {
  if (state_ == State::kClosing) {
    // 'close' is already on its way; the link goes once the overflow is out (or cannot be).
    if (!link_->has_overflow() || link_->peer_gone() || link_->broken()) {
      End(State::kClosed, false);
    }
    return;
  }
  if (state_ != State::kOpen) return;
  if (started_) {
    Dispatch();
  } else {
    CheckWhileStopped();
  }
}

void PortHandle::FlushBeforeExit() {
  // Open, or closing with its close record still queued behind the overflow.
  if (link_ == nullptr || (state_ != State::kOpen && state_ != State::kClosing)) return;
  if (link_->has_overflow()) link_->FlushBeforeExit(kExitStallMs);
}

void PortHandle::CheckWhileStopped() {
  // Nobody reads: messages wait. Only a close with nothing before it ends the port now.
  bool close_next = false;
  bool nothing_before_close = link_->PeekClose(&close_next);
  if (link_->broken() || (nothing_before_close && (close_next || link_->peer_gone()))) {
    Finish();
  } else {
    link_->Sleep();
  }
}

void PortHandle::Dispatch() {
  pending_dispatch_ = false;
  if (state_ != State::kOpen || link_ == nullptr) return;
  if (!started_) return CheckWhileStopped();
  Napi::Env env = Env();
  Addon* addon = GetAddon(env);
  if (addon->stopping) return;
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::HandleScope v8_scope(isolate);
  v8::Context::Scope context_scope(addon->clone.context.Get(isolate));
  for (int budget = kDispatchBatch; budget > 0; budget--) {
    Napi::HandleScope scope(env);
    IncomingRecord record;
    NextStatus status = link_->Next(&record);
    if (status == NextStatus::kBroken) return Finish();
    if (status == NextStatus::kEmpty) {
      if (link_->peer_gone()) return Finish();
      if (link_->FinishBatch()) return;  // asleep: the next record wakes us
      continue;  // a record arrived meanwhile (this still spends budget: a peer cannot spin us)
    }
    if (record.type == RecordType::kClose) return Finish();
    Napi::Value data;
    Napi::Value ports;
    if (Decode(&record, &data, &ports)) {
      if (!Call(addon->on_message, {data, ports})) break;
    } else {
      if (!Call(addon->on_message_error, {data})) break;
    }
    // The listener may have closed, transferred or stopped the port: the rest waits.
    if (state_ != State::kOpen || link_ == nullptr) return;
    if (!started_) return CheckWhileStopped();
  }
  // Batch budget spent, or a listener threw (as Node does, the rest waits for the next turn).
  if (link_ == nullptr) return;
  link_->FinishBatch();
  pending_dispatch_ = true;
  ScheduleIdle();
}

void PortHandle::Finish() {
  if (state_ == State::kClosed || state_ == State::kReleased) return;
  End(State::kClosed, true);
}

void PortHandle::ScheduleIdle() {
  uv_idle_start(idle_, OnIdle);
  // A pending 'close' keeps the loop alive until it is emitted; a pending dispatch only while
  // the port itself is referenced.
  bool keep_alive = pending_close_ || (link_ != nullptr && link_->HasRef());
  if (keep_alive) {
    uv_ref(reinterpret_cast<uv_handle_t*>(idle_));
  } else {
    uv_unref(reinterpret_cast<uv_handle_t*>(idle_));
  }
}

void PortHandle::OnIdle(uv_idle_t* idle) {
  auto* self = static_cast<PortHandle*>(idle->data);
  uv_idle_stop(idle);
  uv_unref(reinterpret_cast<uv_handle_t*>(idle));
  if (GetAddon(self->Env())->stopping) return;  // the environment is exiting: no more JS
  Napi::HandleScope scope(self->Env());
  if (self->pending_dispatch_) self->Dispatch();
  if (self->pending_close_ && !self->pending_dispatch_) {
    self->pending_close_ = false;
    if (!self->close_emitted_) {
      self->close_emitted_ = true;
      self->Call(GetAddon(self->Env())->on_close, {});
    }
    self->UpdateOwnerHold();
  }
}

bool PortHandle::Call(const Napi::FunctionReference& hook,
                      std::initializer_list<napi_value> args) {
  Napi::Env env = Env();
  if (GetAddon(env)->stopping || owner_.IsEmpty()) return false;
  Napi::Object owner = owner_.Value();
  if (owner.IsEmpty()) return false;  // the port object is gone: nobody can listen
  napi_value argv[3] = {owner};
  size_t argc = 1;
  for (napi_value arg : args) argv[argc++] = arg;  // hooks take at most (port, data, ports)
  try {
    hook.MakeCallback(owner, argc, argv, *async_context_);
    return true;
  } catch (const Napi::Error& error) {
    // A listener threw: report it as Node reports errors thrown from its own callbacks.
    napi_fatal_exception(env, error.Value());
    return false;
  }
}

}  // namespace crossport
