// Where unrelated processes meet (lib/rendezvous.ts drives it): a listening socket at a path;
// each accepted connection becomes the socket of a new link, whose segment the listening side
// creates and sends as the connection's first packet. A connection the listener refuses gets a
// first packet without fds, then end of stream.
#pragma once

#include <napi.h>
#include <uv.h>

namespace crossport {

class CallbackContext;  // addon.h

// Watches an fd for readability and calls a JS callback each time (a uv_poll for lib/).
class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit FdWatcher(const Napi::CallbackInfo& info);
  ~FdWatcher() override;

 private:
  static void OnPoll(uv_poll_t* poll, int status, int events);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Stop();

  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference callback_;
  CallbackContext* async_context_ = nullptr;
};

// Adds listenLocal, acceptLocal, connectLocal, welcome, refuse and arrive to `exports`.
void DefineRendezvous(Napi::Env env, Napi::Object exports);

}  // namespace crossport
