// Structured clone with V8's own ValueSerializer / ValueDeserializer — the algorithm
// worker_threads uses — and our delegates: ports are host objects, written as an index into the
// message's port table; a SharedArrayBuffer serializes but cannot be rebuilt by the receiver
// (its memory cannot follow a message into another process), which then gets a DataCloneError.
// This is the only file pair that speaks the V8 API, which ties the binary to a Node ABI.
#pragma once

#include <napi.h>
#include <v8.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace crossport {

// napi_value and v8::Local<v8::Value> are the same pointer in Node (see Node's
// js_native_api_v8.h: V8LocalValueFromJsValue / JsValueFromV8LocalValue).
inline napi_value ToNapi(v8::Local<v8::Value> local) { return reinterpret_cast<napi_value>(*local); }
inline v8::Local<v8::Value> ToV8(napi_value value) {
  v8::Local<v8::Value> local;
  static_assert(sizeof local == sizeof value, "napi_value is a Local");
  memcpy(static_cast<void*>(&local), &value, sizeof value);
  return local;
}

// What the serializer needs from its environment.
struct CloneEnvironment {
  v8::Global<v8::Context> context;
  v8::Global<v8::Function> dom_exception;  // globalThis.DOMException
  v8::Global<v8::Function> missing_transferable;  // () => the error for an unlisted port
  // Where messages are serialized, so that posting one touches no fresh memory: it grows with
  // the largest message up to kMaxScratch and stays. A larger message, or a post from inside
  // another's serialization (a getter), uses the heap.
  static constexpr size_t kMaxScratch = 16 * 1024 * 1024;
  std::vector<uint8_t> scratch = std::vector<uint8_t>(64 * 1024);
  bool scratch_in_use = false;
};

// ArrayBuffers at least this large travel as sections of the message (see message.h), not
// inside V8's bytes: the receiver then copies them once, into their new memory.
constexpr size_t kSectionMinSize = 16 * 1024;

// The contents of an ArrayBuffer sent as a section (kept alive until it is written).
struct Section {
  std::shared_ptr<v8::BackingStore> store;
  size_t size;
  const uint8_t* data() const { return static_cast<const uint8_t*>(store->Data()); }
};

// Bytes produced by the serializer (allocated by its delegate), freed with this object, and
// the sections they refer to.
class SerializedMessage {
 public:
  SerializedMessage() = default;
  ~SerializedMessage();
  SerializedMessage(const SerializedMessage&) = delete;
  SerializedMessage& operator=(const SerializedMessage&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::vector<Section>& sections() const { return sections_; }

 private:
  CloneEnvironment* scratch_owner_ = nullptr;  // set while data_ is its scratch buffer
  friend bool Serialize(CloneEnvironment*, Napi::Value, const std::vector<Napi::Object>&,
                        const std::vector<Napi::ArrayBuffer>&, const std::vector<Napi::ArrayBuffer>&,
                        SerializedMessage*);
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::vector<Section> sections_;
};

// Marks `object` (made by NewPortObject) as a port, which the serializer treats as a host object.
Napi::Object NewPortObject(Napi::Env env, v8::Global<v8::ObjectTemplate>* port_template);
bool IsPortObject(Napi::Value value);

// Serializes `value`. A host object (port or handle stand-in) met in the value is written as its
// index in `objects`; any other is a DataCloneError. The ArrayBuffers of `transfers` are written
// as their index (their bytes travel separately, out of band). Those of `carried`, and any
// other ArrayBuffer of at least kSectionMinSize that a view in the value uses, become sections:
// transfer ids after those of `transfers`, in the order of out->sections(). Returns false with
// the JS exception pending.
bool Serialize(CloneEnvironment* environment, Napi::Value value,
               const std::vector<Napi::Object>& objects,
               const std::vector<Napi::ArrayBuffer>& transfers,
               const std::vector<Napi::ArrayBuffer>& carried, SerializedMessage* out);

// Deserializes `data`; host object indexes resolve to `objects`, transferred ArrayBuffer
// indexes to `transfers`. When the bytes are not a message we can rebuild, sets *failed and
// returns the error (nothing is left pending). Otherwise *referenced (if given) tells which of
// `objects` the value holds.
Napi::Value Deserialize(CloneEnvironment* environment, Napi::Env env, const uint8_t* data,
                        size_t size, const std::vector<Napi::Object>& objects,
                        const std::vector<Napi::ArrayBuffer>& transfers, bool* failed,
                        std::vector<bool>* referenced = nullptr);

// An ArrayBuffer over `length` bytes at `data`, memory of ours: `release(data, length, owner)`
// runs, on any thread, once nothing uses it any more (V8 counts it as the buffer's memory).
Napi::ArrayBuffer NewExternalArrayBuffer(Napi::Env env, void* data, size_t length,
                                         void (*release)(void* data, size_t length, void* owner),
                                         void* owner);
// What holds `buffer`'s memory: keeping it keeps the memory after the buffer is detached.
std::shared_ptr<v8::BackingStore> BackingStoreOf(Napi::ArrayBuffer buffer);

// A resizable ArrayBuffer (new ArrayBuffer(n, { maxByteLength })): it must arrive resizable,
// which only V8's own encoding keeps.
bool IsResizable(Napi::ArrayBuffer buffer);

// Throws `new DOMException(message, 'DataCloneError')`.
void ThrowDataCloneError(CloneEnvironment* environment, v8::Local<v8::String> message);
// Returns it instead.
Napi::Value NewDataCloneError(CloneEnvironment* environment, Napi::Env env, const char* message);

}  // namespace crossport
