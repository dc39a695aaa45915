// PortHandle: the native half of one MessagePort. It owns a Link, dispatches what arrives to
// the JS port through the hooks in Addon (one MakeCallback per message, so nextTicks and
// microtasks run between two messages, as in worker_threads), and serializes what is posted.
#pragma once

#include <napi.h>
#include <uv.h>

#include <deque>
#include <memory>
#include <unordered_set>

#include "link.h"
#include "poll_window.h"
#include "serializer.h"

namespace crossport {

class CallbackContext;  // addon.h

class PortHandle : public Napi::ObjectWrap<PortHandle>, public LinkClient {
 public:
  static Napi::Function Define(Napi::Env env);
  // Makes a handle around `link` (taking it). The JS port is attached with setOwner().
  static Napi::Object New(Napi::Env env, Link* link);
  // The handle inside a JS value, or nullptr if it is not one (checked: unlike Unwrap()).
  static PortHandle* FromValue(Napi::Value value);

  explicit PortHandle(const Napi::CallbackInfo& info);
  ~PortHandle() override;

  void OnLinkEvent() override;
  // Dispatches again (what waited for lib/ to be able to make FileHandles).
  void Resume();
  // The environment is exiting: writes out what this port still queues (see Link).
  void FlushBeforeExit();

 private:
  enum class State { kOpen, kClosing, kClosed, kReleased };

  Napi::Value SetOwner(const Napi::CallbackInfo& info);
  Napi::Value Post(const Napi::CallbackInfo& info);
  Napi::Value Receive(const Napi::CallbackInfo& info);
  // next(): the next message of the batch Dispatch() runs, for lib's deliver(); the `empty`
  // marker at its end, the `handled` marker for a message delivered through a hook.
  Napi::Value Next(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  // watch(on): the JS port has listeners for 'close' or 'drain' (it must then outlive its
  // last reference while open, see UpdateOwnerHold).
  Napi::Value Watch(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value HasRef(const Napi::CallbackInfo& info);
  Napi::Value BufferedAmount(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value ExportFds(const Napi::CallbackInfo& info);
  Napi::Value HandOff(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // Sends a serialized message with its head and fds (closed if the port is closed).
  // `accepted`: the post began before any close() (later ones send nothing).
  bool Send(Napi::Env env, bool accepted, const uint8_t* head, size_t head_size,
            const SerializedMessage& message, std::vector<int>&& fds);
  // Takes the link away for a transfer; the handle becomes inert.
  bool ReleaseTo(LinkState* state);
  // Closes a port nobody received (its message failed), without a 'close' event.
  void Abandon();
  void UpdateOwnerHold();
  // Keeps the event loop alive while a 'drain' is awaited (`writing`: messages are queued).
  void UpdateLoopHold(bool writing);
  void ScheduleIdle();
  static void OnIdle(uv_idle_t* idle);
  // Reads and dispatches up to a batch of records (DispatchBatch); schedules the rest. Then
  // closes the port if a listener asked for it meanwhile.
  void Dispatch();
  void DispatchBatch();
  // Sends the close record and ends the port.
  void CloseNow();
  // While nobody reads: ends the port if a close (or the peer's end) is all that waits.
  void CheckWhileStopped();
  enum class DecodeResult { kOk, kError, kWait };
  // Deserializes one record: kError with the error in *data when it cannot; kWait when it holds
  // a FileHandle and lib/ cannot make one yet (put the record back and wait for Resume()).
  DecodeResult Decode(IncomingRecord* record, Napi::Value* data, Napi::Value* ports);
  // 'close' is due (once): from the loop's close phase; `by_peer`: a turn later (see port.cc).
  void QueueClose(bool by_peer);
  static void OnPeerEnded(uv_idle_t* idle);
  void ScheduleCloseEvent();
  void EmitClose();
  // Ends the port: 'close' is emitted asynchronously, once.
  void Finish();
  // Moves to `next` (letting go of the link unless closing), optionally owing a 'close' event
  // (`by_peer`: the peer closed or left).
  void End(State next, bool emit_close, bool by_peer = false);
  void SetStarted(bool started);
  // The ring is empty: true (and a look on the next loop turn scheduled) while inside the poll
  // window; false when the port should sleep.
  bool KeepPolling(bool dispatched);
  void DestroyLink();
  // Calls a hook of lib/ with the port, as Node calls its own callbacks (a throw becomes an
  // uncaught exception); false if it threw or cannot run.
  bool CallHook(const Napi::FunctionReference& hook);

  Link* link_ = nullptr;
  State state_ = State::kOpen;
  bool started_ = false;
  bool watched_ = false;
  bool drain_listened_ = false;
  bool holding_loop_ = false;  // counted in Addon::drain_waiters
  bool close_emitted_ = false;
  Napi::ObjectReference owner_;  // the JS MessagePort (weak unless UpdateOwnerHold holds it)
  bool owner_held_ = false;
  CallbackContext* async_context_ = nullptr;
  uv_idle_t* idle_ = nullptr;    // runs Dispatch / the 'close' emission on the next loop turn
  bool pending_dispatch_ = false;
  bool pending_close_ = false;
  bool pending_drain_ = false;
  bool drain_at_end_ = false;  // the port ended holding queued messages: 'drain' before 'close'
  // close() waits while a DeferClose lives: during Dispatch() (a listener's close() lets the
  // batch finish) and while a postMessage sends or transfers the port (a getter's close()).
  class DeferClose;
  int close_deferrals_ = 0;
  bool close_requested_ = false;
  // How the current batch ended (set by Next()).
  enum class BatchEnd { kMore, kEmpty, kWait };
  BatchEnd batch_end_ = BatchEnd::kMore;
  int batch_budget_ = 0;
  bool batch_dispatched_ = false;
  PollWindow poll_window_;
  // Every live handle of this environment, for FlushBeforeExit (shared with Addon, so that
  // either may be destroyed first).
  std::shared_ptr<std::unordered_set<PortHandle*>> live_;
  std::shared_ptr<std::deque<PortHandle*>> close_queue_;  // Addon::close_queue
  uv_idle_t* close_event_ = nullptr;  // closing, to emit 'close' from its close callback
};

}  // namespace crossport
