#include "port.h"

#include "addon.h"
#include "handoff.h"
#include "message.h"
#include "serializer.h"
#include "transferable.h"

namespace crossport {

namespace {

// Messages dispatched per loop turn before other I/O gets a chance (as Node does).
constexpr int kDispatchBatch = 1000;

// A transferred ArrayBuffer at least this large travels out of band (transferable.h): its own
// memory when it can move without a copy, else one copy into sealed memory objects that the
// receiver maps copy-on-write, instead of two copies through the message. Below it the copies
// through the (warm) large ring measured faster than fresh pages and a mapping per message
// (npm run bench, u8-64k-transfer 0.38x -> 1.12x of worker_threads, u8-1m-transfer 0.43x ->
// 0.65x), so only buffers too large for the large ring go this way.
constexpr size_t kOutOfBandTransferSize = 4 * 1024 * 1024;

// An ArrayBuffer of `length` bytes about to be overwritten: lib's allocate() (memory not
// zeroed), or a zeroed one if that fails.
Napi::ArrayBuffer NewUnzeroedArrayBuffer(Napi::Env env, size_t length) {
  Napi::Value made;
  try {
    made = GetAddon(env)->allocate.Call({Napi::Number::New(env, static_cast<double>(length))});
  } catch (const Napi::Error&) {
    // (Out of memory there is out of memory here too, and reported as such below.)
  }
  if (!made.IsEmpty() && made.IsArrayBuffer() &&
      made.As<Napi::ArrayBuffer>().ByteLength() == length) {
    return made.As<Napi::ArrayBuffer>();
  }
  return Napi::ArrayBuffer::New(env, length);
}

std::vector<uint64_t> SectionSizes(const SerializedMessage& message) {
  std::vector<uint64_t> sizes;
  for (const Section& section : message.sections()) sizes.push_back(section.size);
  return sizes;
}

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
                         InstanceMethod("next", &PortHandle::Next),
                         InstanceMethod("start", &PortHandle::Start),
                         InstanceMethod("watch", &PortHandle::Watch),
                         InstanceMethod("stop", &PortHandle::Stop),
                         InstanceMethod("ref", &PortHandle::Ref),
                         InstanceMethod("unref", &PortHandle::Unref),
                         InstanceMethod("hasRef", &PortHandle::HasRef),
                         InstanceMethod("bufferedAmount", &PortHandle::BufferedAmount),
                         InstanceMethod("close", &PortHandle::Close),
                         InstanceMethod("exportFds", &PortHandle::ExportFds),
                         InstanceMethod("handOff", &PortHandle::HandOff),
                         InstanceMethod("dispose", &PortHandle::Dispose),
                     });
}

Napi::Object PortHandle::New(Napi::Env env, Link* link) {
  return GetAddon(env)->port_handle_class.New({Napi::External<Link>::New(env, link)});
}

PortHandle* PortHandle::FromValue(Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  Napi::Object object = value.As<Napi::Object>();
  if (!object.InstanceOf(GetAddon(value.Env())->port_handle_class.Value())) return nullptr;
  return Napi::ObjectWrap<PortHandle>::Unwrap(object);
}

PortHandle::PortHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<PortHandle>(info), poll_window_(GetAddon(info.Env())->max_poll_window_ns) {
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
  if (link_->broken()) {
    // No socket event will ever come (libuv refused the socket, or what came with a received
    // port was beyond repair): end the port on the next turn.
    pending_dispatch_ = true;
    ScheduleIdle();
  }
}

PortHandle::~PortHandle() {
  GetAddon(Env())->waiting_for_file_handles.erase(this);
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
  UpdateOwnerHold();  // a received port may hold messages still to write
  return info.Env().Undefined();
}

void PortHandle::UpdateOwnerHold() {
  // Keep the JS port alive while anything it does can still be observed: it listens for
  // messages, for 'close' or 'drain', it owes a 'close' event, or it holds messages not yet
  // written (dropping it would lose them). A port with none of these may be collected, which
  // closes it (its peer gets 'close'); worker_threads keeps every open port until it is closed.
  bool writing = link_ != nullptr && link_->has_overflow();
  bool hold = pending_close_ || state_ == State::kClosing ||
              (state_ == State::kOpen && (started_ || watched_ || writing));
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
  SerializedMessage message;
  if (info.Length() == 1) {
    // Nothing to transfer: the common case, kept short.
    if (!Serialize(&addon->clone, info[0], {}, {}, {}, &message)) return Napi::Value();
    if (message.sections().empty()) {
      MessageHead head{0, 0, sizeof(MessageHead), 0, 0, 0, message.size()};
      return Napi::Boolean::New(
          env, Send(env, reinterpret_cast<const uint8_t*>(&head), sizeof head, message, {}));
    }
    std::vector<Handle> no_handles;
    std::vector<BufferChunks> no_buffers;
    std::vector<LinkState> no_ports;
    std::vector<int> no_fds;
    std::vector<uint8_t> head = EncodeMessageHead(&no_handles, &no_buffers, &no_ports,
                                                  SectionSizes(message), message.size(), &no_fds);
    return Napi::Boolean::New(env, Send(env, head.data(), head.size(), message, {}));
  }
  // (value, transferables, port handles, [kind, fd, kind, fd, ...], ArrayBuffers to detach);
  // transferables are the host objects the value may hold: handle stand-ins, then ports.
  Napi::Array object_list = info[1].As<Napi::Array>();
  Napi::Array port_list = info[2].As<Napi::Array>();
  Napi::Array handle_list = info[3].As<Napi::Array>();
  Napi::Array buffer_list = info[4].As<Napi::Array>();
  const char* too_many = nullptr;
  if (port_list.Length() > kMaxPortsPerMessage) too_many = "Too many MessagePorts in transfer list";
  if (handle_list.Length() / 2 > kMaxHandlesPerMessage) too_many = "Too many handles in transfer list";
  if (too_many != nullptr) {
    ThrowDataCloneError(&addon->clone,
                        v8::String::NewFromUtf8(v8::Isolate::GetCurrent(), too_many).ToLocalChecked());
    return Napi::Value();
  }
  std::vector<Napi::Object> objects;
  for (uint32_t i = 0; i < object_list.Length(); i++) {
    objects.push_back(object_list.Get(i).As<Napi::Object>());
  }
  // Transferred ArrayBuffers: the largest go out of band, each in a memory object of its own;
  // those of middle size become sections; V8 writes the smallest inline.
  std::vector<Napi::ArrayBuffer> large;
  std::vector<Napi::ArrayBuffer> carried;
  for (uint32_t i = 0; i < buffer_list.Length(); i++) {
    Napi::Value value = buffer_list.Get(i);
    if (!value.IsArrayBuffer()) continue;
    Napi::ArrayBuffer buffer = value.As<Napi::ArrayBuffer>();
    if (buffer.ByteLength() >= kOutOfBandTransferSize && large.size() < kMaxBuffersPerMessage) {
      large.push_back(buffer);
    } else if (buffer.ByteLength() >= kSectionMinSize) {
      carried.push_back(buffer);
    }
  }
  if (!Serialize(&addon->clone, info[0], objects, large, carried, &message)) {
    return Napi::Value();  // the DataCloneError is pending; nothing was sent or detached
  }
  // Our own copies of the handles' fds: the caller closes its objects after a successful post.
  std::vector<Handle> handles;
  auto close_handles = [&handles]() {
    for (Handle& handle : handles) os::Close(handle.fd);
  };
  for (uint32_t i = 0; i + 1 < handle_list.Length(); i += 2) {
    auto kind = static_cast<HandleKind>(handle_list.Get(i).As<Napi::Number>().Uint32Value());
    os::SystemError error{0, nullptr};
    int fd = os::Duplicate(handle_list.Get(i + 1).As<Napi::Number>().Int32Value(), &error);
    if (fd < 0) {
      close_handles();
      ThrowSystemError(env, error.errnum, error.syscall);
    }
    handles.push_back(Handle{kind, fd});
  }
  // The bytes of the large transferred buffers: their own memory when it can move without a
  // copy, else a copy (transferable.h). Last of what can fail, as a hand-over cannot be undone
  // without a trace (a handed-over buffer comes back copy-on-write).
  std::vector<OutgoingBuffer> outgoing(large.size());
  for (size_t i = 0; i < large.size(); i++) {
    os::SystemError error{0, nullptr};
    if (!PrepareOutgoing(large[i], &addon->background, &outgoing[i], &error)) {
      for (size_t j = 0; j < i; j++) UndoOutgoing(&outgoing[j]);
      close_handles();
      ThrowSystemError(env, error.errnum, error.syscall);
    }
  }
  // What holds the memory of those buffers: freed on a background thread once they are
  // detached, rather than here (releasing 512 MiB takes tens of milliseconds).
  std::vector<std::pair<std::shared_ptr<v8::BackingStore>, uint64_t>> left_behind;
  for (Napi::ArrayBuffer& buffer : large) {
    left_behind.emplace_back(BackingStoreOf(buffer), buffer.ByteLength());
  }
  std::vector<BufferChunks> buffers;
  for (OutgoingBuffer& buffer : outgoing) buffers.push_back(std::move(buffer.chunks));
  std::vector<LinkState> states(port_list.Length());
  for (uint32_t i = 0; i < port_list.Length(); i++) {
    PortHandle* handle = FromValue(port_list.Get(i));
    if (handle != nullptr) handle->ReleaseTo(&states[i]);
  }
  std::vector<int> fds;
  std::vector<uint8_t> head = EncodeMessageHead(&handles, &buffers, &states, SectionSizes(message),
                                                message.size(), &fds);
  bool sent = Send(env, head.data(), head.size(), message, std::move(fds));
  for (uint32_t i = 0; i < buffer_list.Length(); i++) {
    Napi::Value buffer = buffer_list.Get(i);
    if (buffer.IsArrayBuffer()) buffer.As<Napi::ArrayBuffer>().Detach();
  }
  for (auto& [store, bytes] : left_behind) {
    addon->background.Later([store = std::move(store)]() mutable { store.reset(); }, bytes);
  }
  return Napi::Boolean::New(env, sent);
}

bool PortHandle::Send(Napi::Env env, const uint8_t* head, size_t head_size,
                      const SerializedMessage& message, std::vector<int>&& fds) {
  if (state_ != State::kOpen || link_ == nullptr) {
    for (int fd : fds) os::Close(fd);
    return false;
  }
  os::SystemError error{0, nullptr};
  bool sent;
  if (message.sections().empty()) {
    os::Span spans[] = {{head, head_size}, {message.data(), message.size()}};
    sent = link_->Send(RecordType::kMessage, spans, 2, 2, std::move(fds), &error);
  } else {
    // The prefix (head and V8's bytes), then each section padded to kSectionAlign.
    static constexpr uint8_t kPadding[kSectionAlign] = {};
    std::vector<os::Span> spans{{head, head_size}, {message.data(), message.size()}};
    for (const Section& section : message.sections()) {
      spans.push_back({section.data(), section.size});
      spans.push_back({kPadding, AlignSection(section.size) - section.size});
    }
    sent = link_->Send(RecordType::kMessage, spans.data(), spans.size(), 2, std::move(fds), &error);
  }
  if (link_->peer_gone() || link_->broken()) {
    // The send found the peer gone (EPIPE) or our ring corrupt, and the link stopped polling:
    // no socket event will come to tell us. Look again next turn, to deliver what is left
    // and emit 'close'.
    pending_dispatch_ = true;
    ScheduleIdle();
  }
  UpdateOwnerHold();  // messages may be queued now
  if (!sent && error.syscall != nullptr) ThrowSystemError(env, error.errnum, error.syscall);
  return sent;
}

bool PortHandle::ReleaseTo(LinkState* state) {
  if (state_ != State::kOpen || link_ == nullptr) return false;
  link_->Release(state);
  // The old port object is neutered; like worker_threads, it still gets 'close'.
  End(State::kReleased, true);
  return true;
}

PortHandle::DecodeResult PortHandle::Decode(IncomingRecord* record, Napi::Value* data,
                                            Napi::Value* port_array) {
  Napi::Env env = Env();
  Addon* addon = GetAddon(env);
  std::vector<HandleKind> kinds;
  if (!addon->file_handles_ready && PeekHandleKinds(record->data(), record->size(), &kinds)) {
    for (HandleKind kind : kinds) {
      if (kind != HandleKind::kFileHandle) continue;
      // Node makes FileHandles only asynchronously at first: wait until lib/ can make them.
      record->KeepBulk();  // JavaScript runs next; the record waits
      addon->waiting_for_file_handles.insert(this);
      addon->load_file_handles.Call({});
      return DecodeResult::kWait;
    }
  }
  std::vector<Handle> handles;
  std::vector<BufferChunks> buffer_chunks;
  std::vector<LinkState> states;
  auto fail = [&](Napi::Value error) {
    *data = error;
    return DecodeResult::kError;
  };
  // Before any object exists for them: what the message carried is closed.
  auto close_carried = [&]() {
    for (LinkState& state : states) CloseLinkState(&state);
    for (Handle& handle : handles) os::Close(handle.fd);
  };
  MessageLayout layout;
  if (!DecodeMessageHead(record->data(), record->size(), record->total_size(), &record->fds,
                         &handles, &buffer_chunks, &states, &layout)) {
    return fail(NewDataCloneError(&addon->clone, env, "Unable to deserialize cloned data."));
  }
  // Transferred ArrayBuffers: each maps its sealed memory objects copy-on-write (no copy here).
  std::vector<Napi::ArrayBuffer> buffers;
  for (size_t i = 0; i < buffer_chunks.size(); i++) {
    Napi::Value buffer = AdoptIncoming(env, &buffer_chunks[i]);
    if (buffer.IsEmpty()) {
      close_carried();
      for (size_t j = i + 1; j < buffer_chunks.size(); j++) {
        for (int fd : buffer_chunks[j]) os::Close(fd);
      }
      return fail(NewDataCloneError(&addon->clone, env, "Unable to deserialize cloned data."));
    }
    buffers.push_back(buffer.As<Napi::ArrayBuffer>());
  }
  // Sections: copied into new ArrayBuffers, from the bulk the ring lent the record (given back
  // at once, before any JavaScript runs) or from the prefix. DecodeMessageHead checked that
  // they end where the payload does.
  uint64_t at = layout.sections_offset();
  for (uint64_t length : layout.sections) {
    const uint8_t* from = nullptr;
    if (at >= record->size() && length <= record->bulk_size() &&
        at - record->size() <= record->bulk_size() - length) {
      from = record->bulk() + (at - record->size());
    } else if (length <= record->size() && at <= record->size() - length) {
      from = record->data() + at;
    }
    if (from == nullptr) {  // across the end of the prefix
      record->ReleaseBulk();
      close_carried();
      return fail(NewDataCloneError(&addon->clone, env, "Unable to deserialize cloned data."));
    }
    Napi::ArrayBuffer buffer = NewUnzeroedArrayBuffer(env, length);
    if (length > 0) memcpy(buffer.Data(), from, length);
    buffers.push_back(buffer);
    at += AlignSection(length);
  }
  record->ReleaseBulk();
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
    close_carried();
    return fail(NewDataCloneError(&addon->clone, env, "Unable to deserialize cloned data."));
  }
  // The value's host objects: handles first, then ports (the order the sender listed them in).
  std::vector<Napi::Object> objects;
  Napi::Array handle_objects;
  if (!handles.empty()) {
    Napi::Array handle_kinds = Napi::Array::New(env, handles.size());
    Napi::Array handle_fds = Napi::Array::New(env, handles.size());
    for (uint32_t i = 0; i < handles.size(); i++) {
      handle_kinds.Set(i, static_cast<uint32_t>(handles[i].kind));
      handle_fds.Set(i, handles[i].fd);
    }
    // From here lib/ owns the fds, even when it throws.
    try {
      handle_objects = addon->create_handles.Call({handle_kinds, handle_fds}).As<Napi::Array>();
    } catch (const Napi::Error& error) {
      for (Link* link : links) link->Destroy();
      return fail(error.Value());
    }
    for (uint32_t i = 0; i < handle_objects.Length(); i++) {
      objects.push_back(handle_objects.Get(i).As<Napi::Object>());
    }
  }
  std::vector<PortHandle*> port_handles;
  // Most messages carry no port: they get `undefined` rather than a new empty array.
  *port_array = env.Undefined();
  if (!links.empty()) {
    Napi::Array array = Napi::Array::New(env, links.size());
    for (uint32_t i = 0; i < links.size(); i++) {
      Napi::Object handle = New(env, links[i]);
      port_handles.push_back(Napi::ObjectWrap<PortHandle>::Unwrap(handle));
      Napi::Object port = addon->create_port.Call({handle}).As<Napi::Object>();
      array.Set(i, port);
      objects.push_back(port);
    }
    *port_array = array;
  }
  bool failed = false;
  *data = Deserialize(&addon->clone, env, record->data() + layout.body_offset, layout.body_size,
                      objects, buffers, &failed);
  if (!failed) return DecodeResult::kOk;
  // Nobody will ever see these ports and handles: close them now, so peers learn it at once.
  for (PortHandle* handle : port_handles) handle->Abandon();
  if (!handle_objects.IsEmpty()) addon->discard_handles.Call({handle_objects});
  return DecodeResult::kError;
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
  switch (Decode(&record, &data, &ports)) {
    case DecodeResult::kOk:
      if (link_ != nullptr) link_->Recycle(&record);
      return data;
    case DecodeResult::kWait:
      // As if the message had not arrived yet: it is delivered, first, once it can be.
      link_->Unread(&record);
      return addon->empty.Value();
    case DecodeResult::kError:
      break;
  }
  throw Napi::Error(env, data);
}

Napi::Value PortHandle::Start(const Napi::CallbackInfo& info) {
  SetStarted(true);
  return info.Env().Undefined();
}

Napi::Value PortHandle::Stop(const Napi::CallbackInfo& info) {
  SetStarted(false);
  return info.Env().Undefined();
}

Napi::Value PortHandle::Watch(const Napi::CallbackInfo& info) {
  watched_ = info[0].ToBoolean();
  UpdateOwnerHold();
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

Napi::Value PortHandle::BufferedAmount(const Napi::CallbackInfo& info) {
  bool open = link_ != nullptr && state_ == State::kOpen;
  return Napi::Number::New(info.Env(), open ? static_cast<double>(link_->queued_bytes()) : 0);
}

Napi::Value PortHandle::Close(const Napi::CallbackInfo& info) {
  if (state_ == State::kOpen) {
    os::SystemError error{0, nullptr};
    // Queued behind every message posted before it, so the peer receives those first.
    link_->Send(RecordType::kClose, nullptr, 0, 0, {}, &error);
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

Napi::Value PortHandle::HandOff(const Napi::CallbackInfo& info) {
  LinkState state;
  if (!ReleaseTo(&state)) throw Napi::Error::New(info.Env(), "The port is closed");
  return Napi::Number::New(info.Env(), static_cast<double>(DepositPort(&state)));
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
  UpdateOwnerHold();  // the queue may have been written out
  if (link_->TakeDrained()) {
    pending_drain_ = true;  // 'drain' on the next loop turn
    ScheduleIdle();
  }
  if (started_) {
    poll_window_.OnWake();
    RunFromEventLoop(Env(), [this] { Dispatch(); });
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
  if (!CanCallJavaScript(env)) return;
  Napi::HandleScope scope(env);
  // lib's deliver(port) pulls messages with next() and runs nextTicks and microtasks between two
  // of them, as Node's timers do between two callbacks: one entry into JS per batch. (Where Node
  // lacks the means, deliver takes one message per call and we call it again.)
  batch_budget_ = kDispatchBatch;
  batch_end_ = BatchEnd::kMore;
  batch_dispatched_ = false;
  bool threw = false;
  while (batch_end_ == BatchEnd::kMore && batch_budget_ > 0 && !threw) {
    threw = !CallHook(addon->deliver);
    // A listener may have closed, transferred or stopped the port: the rest waits.
    if (state_ != State::kOpen || link_ == nullptr) return;
    if (!started_) return CheckWhileStopped();
  }
  if (batch_end_ == BatchEnd::kWait) return;  // Resume() carries on once lib/ can make FileHandles
  if (batch_end_ == BatchEnd::kEmpty && !threw) {
    if (KeepPolling(batch_dispatched_)) return;  // looks again on the next turn of the loop
    if (link_->TrySleep()) return;               // asleep: the next record wakes us
  }
  // Budget spent, a listener threw (as in Node, the rest waits for the next turn), or a record
  // arrived as we went to sleep.
  link_->FinishBatch();
  pending_dispatch_ = true;
  ScheduleIdle();
}

Napi::Value PortHandle::Next(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Addon* addon = GetAddon(env);
  if (state_ != State::kOpen || link_ == nullptr || !started_ || batch_budget_ <= 0) {
    return addon->empty.Value();
  }
  batch_budget_--;
  IncomingRecord record;
  NextStatus status = link_->Next(&record);
  if (status == NextStatus::kEmpty && !link_->peer_gone()) {
    link_->WakeWaitingWriter();
    batch_end_ = BatchEnd::kEmpty;
    return addon->empty.Value();
  }
  if (status != NextStatus::kRecord || record.type == RecordType::kClose) {
    Finish();  // closed by the peer, its process gone, or the link broken
    return addon->empty.Value();
  }
  Napi::Value data;
  Napi::Value ports;
  DecodeResult result = Decode(&record, &data, &ports);
  if (result == DecodeResult::kWait) {
    link_->Unread(&record);
    batch_end_ = BatchEnd::kWait;
    return addon->empty.Value();
  }
  batch_dispatched_ = true;
  link_->Recycle(&record);
  if (result == DecodeResult::kOk && ports.IsUndefined()) return data;  // deliver dispatches it
  // The rarer cases go through lib's hooks from here; an exception reaches deliver().
  Napi::Object owner = owner_.Value();
  if (result == DecodeResult::kOk) {
    addon->on_message.Call(owner, {owner, data, ports});
  } else {
    addon->on_message_error.Call(owner, {owner, data});
  }
  return addon->handled.Value();
}

bool PortHandle::KeepPolling(bool dispatched) {
  if (!poll_window_.KeepPolling(dispatched, &GetAddon(Env())->cpu_contention)) return false;
  pending_dispatch_ = true;
  ScheduleIdle();
  return true;
}

void PortHandle::Resume() {
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
  if (!CanCallJavaScript(self->Env())) return;  // the environment is going: no more JS
  Napi::HandleScope scope(self->Env());
  if (self->pending_dispatch_) RunFromEventLoop(self->Env(), [self] { self->Dispatch(); });
  if (self->pending_drain_) {
    self->pending_drain_ = false;
    if (self->state_ == State::kOpen) self->CallHook(GetAddon(self->Env())->on_drain);
  }
  if (self->pending_close_ && !self->pending_dispatch_) {
    self->pending_close_ = false;
    if (!self->close_emitted_) {
      self->close_emitted_ = true;
      self->CallHook(GetAddon(self->Env())->on_close);
    }
    self->UpdateOwnerHold();
  }
}

bool PortHandle::CallHook(const Napi::FunctionReference& hook) {
  Napi::Env env = Env();
  if (!CanCallJavaScript(env) || owner_.IsEmpty()) return false;
  Napi::Object owner = owner_.Value();
  if (owner.IsEmpty()) return false;  // the port object is gone: nobody can listen
  napi_value argv[1] = {owner};
  napi_value result;
  napi_status status = napi_make_callback(env, static_cast<napi_async_context>(*async_context_),
                                          owner, hook.Value(), 1, argv, &result);
  if (status == napi_ok) return true;
  // A listener threw: report it as Node reports errors thrown from its own callbacks (unless
  // the environment is going, when nothing can be reported).
  napi_value error;
  if (napi_get_and_clear_last_exception(env, &error) == napi_ok && CanCallJavaScript(env)) {
    napi_fatal_exception(env, error);
  }
  return false;
}

}  // namespace crossport
