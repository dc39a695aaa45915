// See fake_uv.h. Only the calls native/link.cc makes are defined; linking anything else from
// libuv fails, which says what to add.
#include "fake_uv.h"

#include <poll.h>

#include <map>
#include <vector>

namespace {

struct Handle {
  uv_handle_t* handle;
  int fd = -1;           // poll handles
  int events = 0;        // what the poll handle was started for (0: stopped)
  uv_poll_cb poll_cb = nullptr;
  uv_timer_cb timer_cb = nullptr;
  bool timer_active = false;
  bool closing = false;
  bool referenced = true;
  uv_close_cb close_cb = nullptr;
};

std::map<const uv_handle_t*, Handle>& Handles() {
  static auto* handles = new std::map<const uv_handle_t*, Handle>();
  return *handles;
}

Handle& Find(const void* handle) { return Handles().at(static_cast<const uv_handle_t*>(handle)); }

}  // namespace

extern "C" {

int uv_poll_init(uv_loop_t* loop, uv_poll_t* handle, int fd) {
  handle->loop = loop;
  Handles()[reinterpret_cast<uv_handle_t*>(handle)] = Handle{reinterpret_cast<uv_handle_t*>(handle), fd};
  return 0;
}

int uv_poll_start(uv_poll_t* handle, int events, uv_poll_cb cb) {
  Handle& entry = Find(handle);
  entry.events = events;
  entry.poll_cb = cb;
  return 0;
}

int uv_poll_stop(uv_poll_t* handle) {
  Find(handle).events = 0;
  return 0;
}

int uv_timer_init(uv_loop_t* loop, uv_timer_t* handle) {
  handle->loop = loop;
  Handles()[reinterpret_cast<uv_handle_t*>(handle)] = Handle{reinterpret_cast<uv_handle_t*>(handle)};
  return 0;
}

int uv_timer_start(uv_timer_t* handle, uv_timer_cb cb, uint64_t, uint64_t) {
  Handle& entry = Find(handle);
  entry.timer_cb = cb;
  entry.timer_active = true;
  return 0;
}

int uv_timer_stop(uv_timer_t* handle) {
  Find(handle).timer_active = false;
  return 0;
}

void uv_close(uv_handle_t* handle, uv_close_cb close_cb) {
  Handle& entry = Find(handle);
  entry.closing = true;
  entry.events = 0;
  entry.timer_active = false;
  entry.close_cb = close_cb;
}

int uv_is_closing(const uv_handle_t* handle) { return Find(handle).closing ? 1 : 0; }
void uv_ref(uv_handle_t* handle) { Find(handle).referenced = true; }
void uv_unref(uv_handle_t* handle) { Find(handle).referenced = false; }
int uv_has_ref(const uv_handle_t* handle) { return Find(handle).referenced ? 1 : 0; }

}  // extern "C"

namespace fake_uv {

void RunLoopTurn(bool fire_timers) {
  // (Callbacks may start, stop and close handles: walk a snapshot, looking each one up again.)
  std::vector<const uv_handle_t*> snapshot;
  for (const auto& [key, entry] : Handles()) snapshot.push_back(key);
  for (const uv_handle_t* key : snapshot) {
    auto found = Handles().find(key);
    if (found == Handles().end() || found->second.closing) continue;
    Handle& entry = found->second;
    if (entry.events != 0 && entry.poll_cb != nullptr) {
      short wanted = static_cast<short>(((entry.events & UV_READABLE) ? POLLIN : 0) |
                                        ((entry.events & UV_WRITABLE) ? POLLOUT : 0) |
                                        ((entry.events & UV_DISCONNECT) ? POLLRDHUP : 0));
      struct pollfd ready = {entry.fd, wanted, 0};
      if (poll(&ready, 1, 0) != 1) continue;
      if ((ready.revents & (POLLERR | POLLNVAL)) != 0) {
        entry.poll_cb(reinterpret_cast<uv_poll_t*>(entry.handle), UV_EBADF, 0);
        continue;
      }
      // As libuv: a hang-up alone reports whatever the handle waits for.
      short revents = ready.revents;
      if (revents == POLLHUP) revents = wanted;
      int events = ((revents & POLLIN) ? UV_READABLE : 0) | ((revents & POLLOUT) ? UV_WRITABLE : 0) |
                   ((revents & POLLRDHUP) ? UV_DISCONNECT : 0);
      events &= entry.events;
      if (events != 0) entry.poll_cb(reinterpret_cast<uv_poll_t*>(entry.handle), 0, events);
    } else if (fire_timers && entry.timer_active && entry.timer_cb != nullptr) {
      entry.timer_cb(reinterpret_cast<uv_timer_t*>(entry.handle));
    }
  }
  RunCloseCallbacks();
}

void RunCloseCallbacks() {
  for (bool closed = true; closed;) {
    closed = false;
    for (auto it = Handles().begin(); it != Handles().end(); ++it) {
      if (!it->second.closing) continue;
      uv_close_cb cb = it->second.close_cb;
      uv_handle_t* handle = it->second.handle;
      Handles().erase(it);
      if (cb != nullptr) cb(handle);  // may free the handle's memory
      closed = true;
      break;
    }
  }
}

int OpenHandles() { return static_cast<int>(Handles().size()); }

}  // namespace fake_uv
