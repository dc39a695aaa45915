#include "rendezvous.h"

#include <memory>
#include <string>
#include <vector>

#include "addon.h"
#include "link.h"
#include "os.h"
#include "port.h"
#include "segment.h"

namespace crossport {

Napi::Function FdWatcher::Define(Napi::Env env) {
  return DefineClass(env, "FdWatcher",
                     {
                         InstanceMethod("ref", &FdWatcher::Ref),
                         InstanceMethod("unref", &FdWatcher::Unref),
                         InstanceMethod("close", &FdWatcher::Close),
                     });
}

// new FdWatcher(fd, callback): referenced, watching until close().
FdWatcher::FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  callback_ = Napi::Persistent(info[1].As<Napi::Function>());
  async_context_ = new CallbackContext(env, "crossport:FdWatcher", info.This().As<Napi::Object>());
  poll_ = new uv_poll_t;
  int result = uv_poll_init(GetAddon(env)->loop, poll_, fd);
  if (result != 0) {
    delete poll_;
    poll_ = nullptr;
    ThrowSystemError(env, -result, "uv_poll_init");
  }
  poll_->data = this;
  uv_poll_start(poll_, UV_READABLE, OnPoll);
}

FdWatcher::~FdWatcher() {
  Stop();
  delete async_context_;
}

void FdWatcher::Stop() {
  if (poll_ == nullptr) return;
  uv_poll_stop(poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(poll_),
           [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
  poll_ = nullptr;
}

void FdWatcher::OnPoll(uv_poll_t* poll, int status, int) {
  auto* self = static_cast<FdWatcher*>(poll->data);
  Napi::Env env = self->Env();
  if (!CanCallJavaScript(env)) return;
  Napi::HandleScope scope(env);
  RunFromEventLoop(env, [&] {
    self->async_context_->Run(self->Value(), [&] {
      self->callback_.Call(self->Value(), {Napi::Number::New(env, status)});
    });
  });
}

Napi::Value FdWatcher::Ref(const Napi::CallbackInfo& info) {
  if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
  return info.Env().Undefined();
}

Napi::Value FdWatcher::Unref(const Napi::CallbackInfo& info) {
  if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  return info.Env().Undefined();
}

Napi::Value FdWatcher::Close(const Napi::CallbackInfo& info) {
  Stop();
  return info.Env().Undefined();
}

namespace {

std::string PathOf(const Napi::Value& value) {
  Napi::Buffer<char> buffer = value.As<Napi::Buffer<char>>();
  return std::string(buffer.Data(), buffer.Length());
}

// listenLocal(path: Buffer, mode, backlog) => [fd, device, inode] (the socket file's; 0n, 0n
// for an abstract name)
Napi::Value ListenLocal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  os::SystemError error{0, nullptr};
  os::FileId file;
  int fd = os::ListenLocal(PathOf(info[0]), info[1].As<Napi::Number>().Uint32Value(),
                           info[2].As<Napi::Number>().Int32Value(), &file, &error);
  if (fd < 0) ThrowSystemError(env, error.errnum, error.syscall);
  Napi::Array result = Napi::Array::New(env, 3);
  result.Set(0u, fd);
  result.Set(1u, Napi::BigInt::New(env, file.device));
  result.Set(2u, Napi::BigInt::New(env, file.inode));
  return result;
}

// [fd, pid, uid, gid]: a connection, and who is at its other end.
Napi::Array Connection(Napi::Env env, int fd, const os::PeerCredentials& peer) {
  Napi::Array result = Napi::Array::New(env, 4);
  result.Set(0u, fd);
  result.Set(1u, peer.pid);
  result.Set(2u, peer.uid);
  result.Set(3u, peer.gid);
  return result;
}

// acceptLocal(fd) => [fd, pid, uid, gid], or null when no connection waits
Napi::Value AcceptLocal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  os::PeerCredentials peer{};
  os::SystemError error{0, nullptr};
  int fd = os::AcceptLocal(info[0].As<Napi::Number>().Int32Value(), &peer, &error);
  if (fd < 0) {
    // Nothing waits, or the connection went before we took it: neither is the listener's fault.
    if (error.errnum == EAGAIN || error.errnum == EWOULDBLOCK || error.errnum == ECONNABORTED) {
      return env.Null();
    }
    ThrowSystemError(env, error.errnum, error.syscall);
  }
  return Connection(env, fd, peer);
}

// connectLocal(path: Buffer) => [fd, pid, uid, gid] (of the process that listens there)
Napi::Value ConnectLocal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  os::SystemError error{0, nullptr};
  os::PeerCredentials listener{};
  int fd = os::ConnectLocal(PathOf(info[0]), &listener, &error);
  if (fd < 0) ThrowSystemError(env, error.errnum, error.syscall);
  return Connection(env, fd, listener);
}

// welcome(fd) => PortHandle, or null when the peer already left. Takes the fd.
Napi::Value Welcome(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  os::SystemError error{0, nullptr};
  std::unique_ptr<Segment> segment(Segment::Create(kDefaultRingCapacity, kDefaultLargeRingCapacity, &error));
  if (!segment) {
    os::Close(fd);
    ThrowSystemError(env, error.errnum, error.syscall);
  }
  int segment_fd = segment->fd();
  if (os::SendPacket(fd, &segment_fd, 1, &error) != os::IoResult::kOk) {
    os::Close(fd);
    return env.Null();
  }
  return PortHandle::New(env, new Link(std::move(segment), fd, 0, GetAddon(env)->loop, nullptr));
}

// refuse(fd): a first packet without a segment, then the end. Takes the fd.
Napi::Value Refuse(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  os::SendPacket(fd, nullptr, 0, nullptr);
  os::Close(fd);
  return info.Env().Undefined();
}

// arrive(fd) => PortHandle once the listener's answer came, null before. Throws EACCES when
// refused, ECONNRESET when the listener went without answering, EPROTO for an answer that is no
// segment. Takes the fd unless it returns null.
Napi::Value Arrive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::vector<int> fds;
  os::SystemError error{0, nullptr};
  os::IoResult result = os::ReceivePacket(fd, &fds, &error);
  if (result == os::IoResult::kWouldBlock) return env.Null();
  int errnum = 0;
  std::unique_ptr<Segment> segment;
  if (result == os::IoResult::kOk && fds.size() == 1) {
    segment.reset(Segment::Adopt(fds[0], &error));
    if (segment) fds.clear();  // the segment owns it now
    else errnum = EPROTO;
  } else if (result == os::IoResult::kOk) {
    errnum = fds.empty() ? EACCES : EPROTO;
  } else {
    errnum = result == os::IoResult::kPeerGone ? ECONNRESET : error.errnum;
  }
  for (int extra : fds) os::Close(extra);
  if (errnum != 0) {
    os::Close(fd);
    ThrowSystemError(env, errnum, "connect");
  }
  return PortHandle::New(env, new Link(std::move(segment), fd, 1, GetAddon(env)->loop, nullptr));
}

}  // namespace

void DefineRendezvous(Napi::Env env, Napi::Object exports) {
  exports.Set("FdWatcher", FdWatcher::Define(env));
  exports.Set("listenLocal", Napi::Function::New(env, ListenLocal, "listenLocal"));
  exports.Set("acceptLocal", Napi::Function::New(env, AcceptLocal, "acceptLocal"));
  exports.Set("connectLocal", Napi::Function::New(env, ConnectLocal, "connectLocal"));
  exports.Set("welcome", Napi::Function::New(env, Welcome, "welcome"));
  exports.Set("refuse", Napi::Function::New(env, Refuse, "refuse"));
  exports.Set("arrive", Napi::Function::New(env, Arrive, "arrive"));
}

}  // namespace crossport
