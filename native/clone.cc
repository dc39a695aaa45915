#include "clone.h"

#include <cstring>
#include <vector>

#include "addon.h"
#include "serializer.h"

namespace crossport {

namespace {

// serializeToBytes(value, objects, carried, detach, headroom, slab, offset): [bytes, ...sections]
// or a number. `bytes` is a new Buffer: `headroom` bytes left for the caller's frame header, then
// V8's bytes. When the message has no sections and fits in `slab` (a Uint8Array the caller
// allocates and never reuses) from `offset`, it goes there instead (after `headroom` bytes) and
// the number of bytes taken (headroom included) is returned: no allocation per small message.
// The sections (ArrayBuffers of `carried`, and large ones behind views, see Serialize) are
// copies, in transfer-id order. After a successful serialization the ArrayBuffers of `detach`
// are detached. Throws the DataCloneError (nothing detached) when the value cannot be cloned.
Napi::Value SerializeToBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Addon* addon = GetAddon(env);
  Napi::Array object_list = info[1].As<Napi::Array>();
  Napi::Array carried_list = info[2].As<Napi::Array>();
  Napi::Array detach_list = info[3].As<Napi::Array>();
  size_t headroom = info[4].As<Napi::Number>().Uint32Value();
  std::vector<Napi::Object> objects;
  for (uint32_t i = 0; i < object_list.Length(); i++) {
    objects.push_back(object_list.Get(i).As<Napi::Object>());
  }
  std::vector<Napi::ArrayBuffer> carried;
  for (uint32_t i = 0; i < carried_list.Length(); i++) {
    Napi::Value buffer = carried_list.Get(i);
    if (buffer.IsArrayBuffer()) carried.push_back(buffer.As<Napi::ArrayBuffer>());
  }
  SerializedMessage message;
  if (!Serialize(&addon->clone, info[0], objects, {}, carried, &message)) {
    return Napi::Value();  // the DataCloneError is pending
  }
  auto detach = [&]() {
    for (uint32_t i = 0; i < detach_list.Length(); i++) {
      Napi::Value buffer = detach_list.Get(i);
      if (buffer.IsArrayBuffer()) buffer.As<Napi::ArrayBuffer>().Detach();
    }
  };
  if (info.Length() >= 7 && info[5].IsTypedArray() && message.sections().empty()) {
    Napi::TypedArray slab = info[5].As<Napi::TypedArray>();
    size_t offset = info[6].As<Napi::Number>().Uint32Value();
    size_t needed = headroom + message.size();
    if (offset <= slab.ByteLength() && needed <= slab.ByteLength() - offset) {
      uint8_t* at = static_cast<uint8_t*>(slab.ArrayBuffer().Data()) + slab.ByteOffset() + offset;
      memset(at, 0, headroom);
      if (message.size() > 0) memcpy(at + headroom, message.data(), message.size());
      detach();
      return Napi::Number::New(env, static_cast<double>(needed));
    }
  }
  Napi::Array out = Napi::Array::New(env, 1 + message.sections().size());
  Napi::Buffer<uint8_t> bytes = Napi::Buffer<uint8_t>::New(env, headroom + message.size());
  memset(bytes.Data(), 0, headroom);
  if (message.size() > 0) memcpy(bytes.Data() + headroom, message.data(), message.size());
  out.Set(0u, bytes);
  uint32_t index = 1;
  for (const Section& section : message.sections()) {
    out.Set(index++, Napi::Buffer<uint8_t>::Copy(env, section.data(), section.size));
  }
  detach();
  return out;
}

// deserializeFromBytes(bytes, objects, sections, offset = 0): the value of the bytes from
// `offset` on. Host object indexes resolve to
// `objects`, section ids to `sections` (ArrayBuffers the value takes over). Throws the
// DataCloneError (or V8's own error) when the bytes are not a message we can rebuild.
Napi::Value DeserializeFromBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Addon* addon = GetAddon(env);
  Napi::TypedArray bytes = info[0].As<Napi::TypedArray>();
  Napi::Array object_list = info[1].As<Napi::Array>();
  Napi::Array section_list = info[2].As<Napi::Array>();
  std::vector<Napi::Object> objects;
  for (uint32_t i = 0; i < object_list.Length(); i++) {
    objects.push_back(object_list.Get(i).As<Napi::Object>());
  }
  std::vector<Napi::ArrayBuffer> sections;
  for (uint32_t i = 0; i < section_list.Length(); i++) {
    sections.push_back(section_list.Get(i).As<Napi::ArrayBuffer>());
  }
  size_t offset = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Uint32Value() : 0;
  if (offset > bytes.ByteLength()) throw Napi::RangeError::New(env, "offset is past the end of the bytes");
  const uint8_t* data = static_cast<const uint8_t*>(bytes.ArrayBuffer().Data()) + bytes.ByteOffset();
  bool failed = false;
  Napi::Value value = Deserialize(&addon->clone, env, data + offset, bytes.ByteLength() - offset,
                                  objects, sections, &failed);
  if (failed) throw Napi::Error(env, value);
  return value;
}

}  // namespace

void DefineClone(Napi::Env env, Napi::Object exports) {
  exports.Set("serializeToBytes", Napi::Function::New(env, SerializeToBytes, "serializeToBytes"));
  exports.Set("deserializeFromBytes",
              Napi::Function::New(env, DeserializeFromBytes, "deserializeFromBytes"));
}

}  // namespace crossport
