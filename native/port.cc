#include "port.h"

#include <algorithm>
#include <cerrno>

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

// Whether `fd` is the kind of object a handle of `kind` is rebuilt from: Node would take any
// fd for a socket, server or UDP socket and fail later, asynchronously (an 'error' event nobody
// listens for yet, which ends the process).
bool FitsHandleKind(HandleKind kind, int fd) {
  os::FdKind actual = os::KindOfFd(fd);
  switch (kind) {
    case HandleKind::kSocket:
      return actual == os::FdKind::kStreamSocket;
    case HandleKind::kServer:
      return actual == os::FdKind::kListeningSocket;
    case HandleKind::kUdp4:
      return actual == os::FdKind::kUdp4Socket;
    case HandleKind::kUdp6:
      return actual == os::FdKind::kUdp6Socket;
    case HandleKind::kFileHandle:
    case HandleKind::kFileDescriptor:
      return actual != os::FdKind::kNotOpen;
  }
  return false;
}

// At exit, how long a port waits for a reader that makes no room before it gives up on the
// messages still queued (a peer that does not read must not hold the process forever).
constexpr int kExitStallMs = 2000;

}  // namespace

// While one lives, close() on the port waits (see PortHandle::Close); the port closes when the
// last one goes.
class PortHandle::DeferClose {
 public:
  explicit DeferClose(PortHandle* port) : port_(port) { port_->close_deferrals_++; }
  ~DeferClose() {
    if (--port_->close_deferrals_ > 0 || !port_->close_requested_) return;
    port_->close_requested_ = false;
    try {
      port_->CloseNow();
    } catch (const Napi::Error&) {
      // Only when the environment is going: nobody is left to tell.
    }
  }
  DeferClose(const DeferClose&) = delete;
  DeferClose& operator=(const DeferClose&) = delete;

 private:
  PortHandle* port_;
};

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
  // In a thread being terminated (worker.terminate()) nothing can be made: New() throws, or
  // returns an object whose constructor never ran (node-addon-api swallows the failed wrap).
  // Either way the link belongs to no port and goes now: an event must not find it without one,
  // and the thread's loop may not close with its handles open.
  Napi::Object handle;
  try {
    handle = GetAddon(env)->port_handle_class.New({Napi::External<Link>::New(env, link)});
  } catch (const Napi::Error&) {
    if (!link->has_client()) link->Destroy();
    throw;
  }
  if (!link->has_client()) {
    link->Destroy();
    throw Napi::Error::New(env, "The port could not be made (the thread is being terminated)");
  }
  return handle;
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
  idle_ = new uv_idle_t;
  uv_idle_init(GetAddon(env)->loop, idle_);
  idle_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(idle_));
  live_ = GetAddon(env)->live_ports;
  live_->insert(this);
  close_queue_ = GetAddon(env)->close_queue;
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
  close_queue_->erase(std::remove(close_queue_->begin(), close_queue_->end(), this),
                      close_queue_->end());
  if (close_event_ != nullptr) close_event_->data = nullptr;
  if (holding_loop_) {
    holding_loop_ = false;
    if (--GetAddon(Env())->drain_waiters == 0) {
      uv_unref(reinterpret_cast<uv_handle_t*>(GetAddon(Env())->drain_hold));
    }
  }
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
  Napi::Object owner = info[0].As<Napi::Object>();
  owner_ = Napi::Weak(owner);
  // The port is its callbacks' async resource, as Node's MessagePort is: listeners see it as
  // executionAsyncResource(), and AsyncLocalStorage finds the store current when the port was
  // made. (The resource is held weakly: one of its own would be collected, taking the store.)
  if (async_context_ == nullptr) {
    async_context_ = new CallbackContext(info.Env(), "crossport:MessagePort", owner);
  }
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
  UpdateLoopHold(writing);
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
  // A post that starts after a deferred close() sends nothing; a close() from a getter that the
  // serializer runs waits until this message is out, as in worker_threads.
  bool accepted = !close_requested_;
  DeferClose defer_own_close(this);
  SerializedMessage message;
  if (info.Length() == 1) {
    // Nothing to transfer: the common case, kept short.
    if (!Serialize(&addon->clone, info[0], {}, {}, {}, &message)) return Napi::Value();
    if (message.sections().empty()) {
      MessageHead head{0, 0, sizeof(MessageHead), 0, 0, 0, message.size()};
      return Napi::Boolean::New(
          env, Send(env, accepted, reinterpret_cast<const uint8_t*>(&head), sizeof head, message,
                    {}));
    }
    std::vector<Handle> no_handles;
    std::vector<BufferChunks> no_buffers;
    std::vector<LinkState> no_ports;
    std::vector<int> no_fds;
    std::vector<uint8_t> head = EncodeMessageHead(&no_handles, &no_buffers, &no_ports,
                                                  SectionSizes(message), message.size(), &no_fds);
    return Napi::Boolean::New(env, Send(env, accepted, head.data(), head.size(), message, {}));
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
  // The ports to transfer: a getter that closes one of them does not keep it from going (its
  // close waits, and the transfer wins, as in worker_threads).
  std::vector<PortHandle*> transferred;
  std::vector<std::unique_ptr<DeferClose>> deferred_closes;
  for (uint32_t i = 0; i < port_list.Length(); i++) {
    PortHandle* handle = FromValue(port_list.Get(i));
    transferred.push_back(handle);
    if (handle != nullptr) deferred_closes.push_back(std::make_unique<DeferClose>(handle));
  }
  bool was_open = state_ == State::kOpen;
  // Transferred ArrayBuffers: the largest go out of band, each in a memory object of its own;
  // those of middle size become sections; V8 writes the smallest inline.
  std::vector<Napi::ArrayBuffer> large;
  std::vector<Napi::ArrayBuffer> carried;
  for (uint32_t i = 0; i < buffer_list.Length(); i++) {
    Napi::Value value = buffer_list.Get(i);
    if (!value.IsArrayBuffer()) continue;
    Napi::ArrayBuffer buffer = value.As<Napi::ArrayBuffer>();
    if (buffer.ByteLength() >= kOutOfBandTransferSize && large.size() < kMaxBuffersPerMessage &&
        !IsResizable(buffer)) {
      large.push_back(buffer);
    } else if (buffer.ByteLength() >= kSectionMinSize) {
      carried.push_back(buffer);
    }
  }
  if (!Serialize(&addon->clone, info[0], objects, large, carried, &message)) {
    return Napi::Value();  // the DataCloneError is pending; nothing was sent or detached
  }
  // A getter may have transferred a listed port elsewhere, or this port: then nothing is sent and
  // nothing detached (a DataCloneError, as the spec's transfer step gives for a detached port),
  // rather than a message that names fds nobody holds any more.
  const char* moved = nullptr;
  for (PortHandle* handle : transferred) {
    if (handle == nullptr || handle->state_ != State::kOpen || handle->link_ == nullptr) {
      moved = "MessagePort in transfer list is already detached";
    }
  }
  if (was_open && state_ == State::kReleased) moved = "MessagePort was transferred while posting";
  if (moved != nullptr) {
    ThrowDataCloneError(&addon->clone,
                        v8::String::NewFromUtf8(v8::Isolate::GetCurrent(), moved).ToLocalChecked());
    return Napi::Value();
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
  std::vector<LinkState> states(transferred.size());
  for (size_t i = 0; i < transferred.size(); i++) transferred[i]->ReleaseTo(&states[i]);
  std::vector<int> fds;
  std::vector<uint8_t> head = EncodeMessageHead(&handles, &buffers, &states, SectionSizes(message),
                                                message.size(), &fds);
  bool sent = Send(env, accepted, head.data(), head.size(), message, std::move(fds));
  for (uint32_t i = 0; i < buffer_list.Length(); i++) {
    Napi::Value buffer = buffer_list.Get(i);
    if (buffer.IsArrayBuffer()) buffer.As<Napi::ArrayBuffer>().Detach();
  }
  for (auto& [store, bytes] : left_behind) {
    addon->background.Later([store = std::move(store)]() mutable { store.reset(); }, bytes);
  }
  return Napi::Boolean::New(env, sent);
}

bool PortHandle::Send(Napi::Env env, bool accepted, const uint8_t* head, size_t head_size,
                      const SerializedMessage& message, std::vector<int>&& fds) {
  if (!accepted || state_ != State::kOpen || link_ == nullptr) {
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
  if (std::find(record->fds.begin(), record->fds.end(), -1) != record->fds.end()) {
    // The kernel could not give us every fd of the message (this process is out of fds): it
    // cannot arrive whole. The channel goes on.
    *data = NewSystemError(env, EMFILE, "recvmsg").Value();
    return DecodeResult::kError;
  }
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
  for (const Handle& handle : handles) {
    if (FitsHandleKind(handle.kind, handle.fd)) continue;
    close_carried();
    for (BufferChunks& chunks : buffer_chunks) {
      for (int fd : chunks) os::Close(fd);
    }
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
      Napi::Object handle;
      try {
        handle = New(env, links[i]);
      } catch (const Napi::Error&) {
        for (uint32_t rest = i + 1; rest < links.size(); rest++) links[rest]->Destroy();  // (see New)
        throw;
      }
      port_handles.push_back(Napi::ObjectWrap<PortHandle>::Unwrap(handle));
      Napi::Object port = addon->create_port.Call({handle}).As<Napi::Object>();
      array.Set(i, port);
      objects.push_back(port);
    }
    *port_array = array;
  }
  bool failed = false;
  std::vector<bool> referenced;
  *data = Deserialize(&addon->clone, env, record->data() + layout.body_offset, layout.body_size,
                      objects, buffers, &failed, &referenced);
  if (!failed) {
    // A handle the value does not hold (listed only in the transfer list, or dropped by a peer
    // that lies) would keep its fd open for ever, unreachable: it is closed. (Ports not in
    // the value still arrive, in event.ports.)
    Napi::Array unreachable = Napi::Array::New(env);
    for (uint32_t i = 0; i < handles.size(); i++) {
      if (!referenced[i]) unreachable.Set(unreachable.Length(), objects[i]);
    }
    if (unreachable.Length() > 0) addon->discard_handles.Call({unreachable});
    return DecodeResult::kOk;
  }
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
  drain_listened_ = info[1].ToBoolean();
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

void PortHandle::End(State next, bool emit_close, bool by_peer) {
  // What the port still held for its peer is gone with the channel (or moves with the port, or is
  // written out while it closes), and bufferedAmount falls to 0: 'drain' tells a producer waiting
  // for it (`await once(port, 'drain')`), just before 'close'.
  if (state_ == State::kOpen && link_ != nullptr && link_->queued_bytes() > 0) drain_at_end_ = true;
  if (next != State::kClosing) DestroyLink();
  state_ = next;
  started_ = false;
  if (emit_close) QueueClose(by_peer);
  UpdateOwnerHold();
}

// 'close' events come as worker_threads' do, from the close phase of the event loop (a handle
// closed for the purpose): after setImmediate callbacks, last closed first. A port learns that its
// peer closed only in a later turn, as a worker_threads port learns it from its closing sibling.
void PortHandle::QueueClose(bool by_peer) {
  if (pending_close_ || close_emitted_) return;
  pending_close_ = true;
  if (!by_peer) return ScheduleCloseEvent();
  close_queue_->push_back(this);
  uv_idle_start(GetAddon(Env())->close_events, OnPeerEnded);
}

void PortHandle::OnPeerEnded(uv_idle_t* idle) {
  auto* queue = static_cast<std::deque<PortHandle*>*>(idle->data);
  uv_idle_stop(idle);
  // (A port leaves the queue when it is destroyed, which cannot happen while its event is due:
  // its owner is held.)
  while (!queue->empty()) {
    queue->front()->ScheduleCloseEvent();
    queue->pop_front();
  }
}

void PortHandle::ScheduleCloseEvent() {
  // A closing handle also keeps the loop alive until its callback ran, as 'close' should.
  close_event_ = new uv_idle_t;
  uv_idle_init(GetAddon(Env())->loop, close_event_);
  close_event_->data = this;
  uv_close(reinterpret_cast<uv_handle_t*>(close_event_), [](uv_handle_t* handle) {
    auto* port = static_cast<PortHandle*>(handle->data);
    delete reinterpret_cast<uv_idle_t*>(handle);
    if (port == nullptr) return;  // destroyed meanwhile (the environment is going)
    port->close_event_ = nullptr;
    port->EmitClose();
  });
}

void PortHandle::EmitClose() {
  Napi::Env env = Env();
  if (!CanCallJavaScript(env)) return;  // the environment is going: no more JS
  Napi::HandleScope scope(env);
  pending_close_ = false;
  close_emitted_ = true;
  if (drain_at_end_) {
    drain_at_end_ = false;
    CallHook(GetAddon(env)->on_drain);
  }
  CallHook(GetAddon(env)->on_close);
  UpdateOwnerHold();
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
  if (state_ == State::kOpen && close_deferrals_ > 0) {
    // From a listener of this port (or a nextTick between two of its messages): as in
    // worker_threads, what is already queued is still delivered, and the port closes after the
    // batch; from a getter run by a postMessage that sends or transfers it: after that message.
    // It sends nothing more meanwhile; its 'close' is due from now, as if it had closed now.
    close_requested_ = true;
    QueueClose(false);
  } else {
    CloseNow();
  }
  return info.Env().Undefined();
}

void PortHandle::CloseNow() {
  if (state_ != State::kOpen) return;
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
  if (close_requested_ || !ReleaseTo(&state)) {
    throw Napi::Error::New(info.Env(), "The port is closed");
  }
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
  if (link_->TakeDrained()) {
    pending_drain_ = true;  // 'drain' on the next loop turn
    ScheduleIdle();
  }
  UpdateOwnerHold();  // the queue may have been written out
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
  DeferClose defer_close(this);
  DispatchBatch();
}

void PortHandle::DispatchBatch() {
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
  End(State::kClosed, true, true);
}

void PortHandle::ScheduleIdle() {
  uv_idle_start(idle_, OnIdle);
  // A pending dispatch keeps the loop alive only while the port itself is referenced.
  if (link_ != nullptr && link_->HasRef()) {
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
    self->UpdateOwnerHold();
  }
}

void PortHandle::UpdateLoopHold(bool writing) {
  // A producer awaiting 'drain' (`await once(port, 'drain')`) must not see its process exit in
  // the meantime, as pending writes keep a socket's process alive: while this port holds queued
  // messages, or owes the 'drain' event, and someone listens for it. (When the port ends, its
  // 'close', with the 'drain' before it, holds the loop itself.)
  bool hold = state_ == State::kOpen && drain_listened_ && (writing || pending_drain_);
  if (hold == holding_loop_) return;
  holding_loop_ = hold;
  Addon* addon = GetAddon(Env());
  addon->drain_waiters += hold ? 1 : -1;
  if (addon->drain_waiters == (hold ? 1 : 0)) {
    auto* handle = reinterpret_cast<uv_handle_t*>(addon->drain_hold);
    hold ? uv_ref(handle) : uv_unref(handle);
  }
}

bool PortHandle::CallHook(const Napi::FunctionReference& hook) {
  if (owner_.IsEmpty() || async_context_ == nullptr) return false;
  Napi::Object owner = owner_.Value();
  if (owner.IsEmpty()) return false;  // the port object is gone: nobody can listen
  return CallFromEventLoop(Env(), *async_context_, owner, hook.Value(), owner);
}

}  // namespace crossport
