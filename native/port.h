// PortHandle: the native half of one MessagePort. It owns a Link, dispatches what arrives to
// the JS port through the hooks in Addon (one MakeCallback per message, so nextTicks and
// microtasks run between two messages, as in worker_threads), and serializes what is posted.
#pragma once

#include <napi.h>
#include <uv.h>

#include <memory>
#include <unordered_set>

#include "link.h"

namespace crossport {

class PortHandle : public Napi::ObjectWrap<PortHandle>, public LinkClient {
 public:
  static Napi::Function Define(Napi::Env env);
  // Makes a handle around `link` (taking it). The JS port is attached with setOwner().
  static Napi::Object New(Napi::Env env, Link* link);
  // The handle inside a JS value, or nullptr if it is not one.
  static PortHandle* Unwrap(Napi::Value value);

  explicit PortHandle(const Napi::CallbackInfo& info);
  ~PortHandle() override;

  void OnLinkEvent() override;
  // The environment is exiting: writes out what this port still queues (see Link).
  void FlushBeforeExit();

 private:
  enum class State { kOpen, kClosing, kClosed, kReleased };

  Napi::Value SetOwner(const Napi::CallbackInfo& info);
  Napi::Value Post(const Napi::CallbackInfo& info);
  Napi::Value Receive(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value HasRef(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value ExportFds(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // Takes the link away for a transfer; the handle becomes inert.
  bool ReleaseTo(LinkState* state);
  // Closes a port nobody received (its message failed), without a 'close' event.
  void Abandon();
  void UpdateOwnerHold();
  void ScheduleIdle();
  static void OnIdle(uv_idle_t* idle);
  // Reads and dispatches up to a batch of records; schedules the rest.
  void Dispatch();
  // While nobody reads: ends the port if a close (or the peer's end) is all that waits.
  void CheckWhileStopped();
  // Deserializes one record; returns false with the error in *data when it cannot.
  bool Decode(IncomingRecord* record, Napi::Value* data, Napi::Value* ports);
  // Ends the port: 'close' is emitted asynchronously, once.
  void Finish();
  // Moves to `next` (letting go of the link unless closing), optionally owing a 'close' event.
  void End(State next, bool emit_close);
  void SetStarted(bool started);
  void DestroyLink();
  // Calls a hook with (port, ...args); false if it threw or cannot run (then stop the batch).
  bool Call(const Napi::FunctionReference& hook, std::initializer_list<napi_value> args);

  Link* link_ = nullptr;
  State state_ = State::kOpen;
  bool started_ = false;
  bool close_emitted_ = false;
  Napi::ObjectReference owner_;  // the JS MessagePort (weak unless UpdateOwnerHold holds it)
  bool owner_held_ = false;
  Napi::AsyncContext* async_context_ = nullptr;
  uv_idle_t* idle_ = nullptr;    // runs Dispatch / the 'close' emission on the next loop turn
  bool pending_dispatch_ = false;
  bool pending_close_ = false;
  // Every live handle of this environment, for FlushBeforeExit (shared with Addon, so that
  // either may be destroyed first).
  std::shared_ptr<std::unordered_set<PortHandle*>> live_;
};

}  // namespace crossport
