// Per-environment state of the addon (set with Env::SetInstanceData): no mutable globals, so
// the addon works in worker threads and when loaded twice.
#pragma once

#include <napi.h>

#include <memory>
#include <unordered_set>
#include <uv.h>
#include <v8.h>

#include "serializer.h"

namespace crossport {

class PortHandle;

struct Addon {
  CloneEnvironment clone;
  uv_loop_t* loop = nullptr;
  v8::Global<v8::ObjectTemplate> port_template;
  Napi::FunctionReference port_handle_class;
  // JS hooks registered by lib/ (see lib/native.ts, Hooks).
  Napi::FunctionReference on_message;       // (port, data, ports) => void
  Napi::FunctionReference on_message_error;  // (port, error) => void
  Napi::FunctionReference on_close;         // (port) => void
  Napi::FunctionReference create_port;      // (handle) => port
  Napi::ObjectReference empty;              // what receive() returns when nothing waits
  bool stopping = false;                    // set at process 'exit': JS can no longer run
  // Every live PortHandle (see PortHandle::FlushBeforeExit).
  std::shared_ptr<std::unordered_set<PortHandle*>> live_ports =
      std::make_shared<std::unordered_set<PortHandle*>>();
};

Addon* GetAddon(Napi::Env env);
Napi::Object Init(Napi::Env env, Napi::Object exports);

// Throws an Error with a Node-style errno `code` and `syscall`.
[[noreturn]] void ThrowSystemError(Napi::Env env, int errnum, const char* syscall);

}  // namespace crossport
