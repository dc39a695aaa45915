// Structured clone to and from plain bytes, for transports that are not a shared-memory link
// (lib/nats): the same serializer and delegates as a local port (serializer.h), so a value
// clones across hosts exactly as it does between processes.
#pragma once

#include <napi.h>

namespace crossport {

// Adds serializeToBytes and deserializeFromBytes to `exports`.
void DefineClone(Napi::Env env, Napi::Object exports);

}  // namespace crossport
