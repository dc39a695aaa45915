// What a Worker's process (lib/worker.ts) needs from the addon beyond ports: the notice by which
// a worker process tells its parent that it ran out of heap, its stack size, and the
// parent-death signal.
#pragma once

#include <napi.h>

namespace crossport {

// noticePair(), watchHeapLimit(fd), setStackSize(kib), setParentDeathSignal(signal): see
// lib/native.ts.
void DefineWorker(Napi::Env env, Napi::Object exports);

}  // namespace crossport
