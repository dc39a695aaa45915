#include "serializer.h"

#include "os.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace crossport {

namespace {

// The other direction of ToNapi (serializer.h).
v8::Local<v8::Value> ToV8(napi_value value) {
  v8::Local<v8::Value> local;
  static_assert(sizeof local == sizeof value, "napi_value is a Local");
  memcpy(static_cast<void*>(&local), &value, sizeof value);
  return local;
}

napi_value FromV8(v8::Local<v8::Value> local) { return ToNapi(local); }

// The tag in a port object's single internal field (its address is what counts).
const int kPortTag = 0x706f7274;

v8::Local<v8::String> Text(v8::Isolate* isolate, const char* text) {
  return v8::String::NewFromUtf8(isolate, text).ToLocalChecked();
}

class WriteDelegate : public v8::ValueSerializer::Delegate {
 public:
  WriteDelegate(CloneEnvironment* environment, v8::Isolate* isolate,
                const std::vector<Napi::Object>& ports)
      : environment_(environment), isolate_(isolate), ports_(ports) {}

  void set_serializer(v8::ValueSerializer* serializer) { serializer_ = serializer; }

  void ThrowDataCloneError(v8::Local<v8::String> message) override {
    crossport::ThrowDataCloneError(environment_, message);
  }

  v8::Maybe<bool> WriteHostObject(v8::Isolate* isolate, v8::Local<v8::Object> object) override {
    for (size_t i = 0; i < ports_.size(); i++) {
      if (ToV8(ports_[i])->StrictEquals(object)) {
        serializer_->WriteUint32(static_cast<uint32_t>(i));
        return v8::Just(true);
      }
    }
    if (IsPortObject(Napi::Value(nullptr, FromV8(object)))) {
      // Node throws this one as a TypeError with a code, not as a DataCloneError.
      v8::Local<v8::Value> error = v8::Exception::TypeError(Text(
          isolate, "Object that needs transfer was found in message but not listed in transferList"));
      error.As<v8::Object>()
          ->Set(isolate->GetCurrentContext(), Text(isolate, "code"),
                Text(isolate, "ERR_MISSING_TRANSFERABLE_IN_TRANSFER_LIST"))
          .Check();
      isolate->ThrowException(error);
    } else {
      v8::String::Utf8Value name(isolate, object->GetConstructorName());
      std::string message = std::string("#<") + (*name ? *name : "Object") +
                            "> could not be cloned.";
      ThrowDataCloneError(Text(isolate, message.c_str()));
    }
    return v8::Nothing<bool>();
  }

  v8::Maybe<uint32_t> GetSharedArrayBufferId(v8::Isolate*,
                                             v8::Local<v8::SharedArrayBuffer>) override {
    return v8::Just<uint32_t>(0);  // rejected by the receiver, see GetSharedArrayBufferFromId
  }

  v8::Maybe<uint32_t> GetWasmModuleTransferId(v8::Isolate* isolate,
                                              v8::Local<v8::WasmModuleObject>) override {
    ThrowDataCloneError(Text(isolate, "#<Module> could not be cloned."));
    return v8::Nothing<uint32_t>();
  }

  void* ReallocateBufferMemory(void* old_buffer, size_t size, size_t* actual_size) override {
    std::vector<uint8_t>& scratch = environment_->scratch;
    bool from_scratch = old_buffer != nullptr && old_buffer == scratch.data();
    if ((old_buffer == nullptr && !environment_->scratch_in_use) || from_scratch) {
      if (size <= scratch.size()) {
        environment_->scratch_in_use = true;
        *actual_size = scratch.size();
        return scratch.data();
      }
      if (size <= CloneEnvironment::kMaxScratch) {
        // Grow the scratch buffer for good (keeping what was written).
        scratch.resize(std::min(CloneEnvironment::kMaxScratch, std::max(size, 2 * scratch.size())));
        environment_->scratch_in_use = true;
        *actual_size = scratch.size();
        return scratch.data();
      }
    }
    void* buffer;
    if (from_scratch) {
      // Outgrew what the scratch buffer may hold: move to the heap (V8 then forgets the scratch).
      buffer = malloc(size);
      if (buffer != nullptr) memcpy(buffer, scratch.data(), scratch.size());
      environment_->scratch_in_use = false;
    } else {
      buffer = realloc(old_buffer, size);
    }
    *actual_size = buffer != nullptr ? size : 0;
    return buffer;
  }

  void FreeBufferMemory(void* buffer) override {
    if (buffer == environment_->scratch.data()) {
      environment_->scratch_in_use = false;
    } else {
      free(buffer);
    }
  }

 private:
  CloneEnvironment* environment_;
  v8::Isolate* isolate_;
  const std::vector<Napi::Object>& ports_;
  v8::ValueSerializer* serializer_ = nullptr;
};

// V8 runs the deserializer's delegate where JavaScript may not run, so it cannot construct a
// DOMException there: it records the message, throws a placeholder, and Deserialize builds the
// DataCloneError once V8 has returned.
class ReadDelegate : public v8::ValueDeserializer::Delegate {
 public:
  explicit ReadDelegate(const std::vector<Napi::Object>& ports) : ports_(ports) {}

  void set_deserializer(v8::ValueDeserializer* deserializer) { deserializer_ = deserializer; }
  const char* clone_error() const { return clone_error_; }

  v8::MaybeLocal<v8::Object> ReadHostObject(v8::Isolate* isolate) override {
    uint32_t index;
    if (!deserializer_->ReadUint32(&index) || index >= ports_.size()) {
      return Fail(isolate, "Unable to deserialize cloned data.");
    }
    return ToV8(ports_[index]).As<v8::Object>();
  }

  v8::MaybeLocal<v8::SharedArrayBuffer> GetSharedArrayBufferFromId(v8::Isolate* isolate,
                                                                   uint32_t) override {
    Fail(isolate, "A SharedArrayBuffer cannot be shared between processes; it could not be cloned.");
    return {};
  }

  v8::MaybeLocal<v8::WasmModuleObject> GetWasmModuleFromId(v8::Isolate* isolate,
                                                           uint32_t) override {
    Fail(isolate, "Unable to deserialize cloned data.");
    return {};
  }

 private:
  v8::MaybeLocal<v8::Object> Fail(v8::Isolate* isolate, const char* message) {
    clone_error_ = message;
    isolate->ThrowException(v8::Exception::Error(Text(isolate, message)));
    return {};
  }

  const std::vector<Napi::Object>& ports_;
  v8::ValueDeserializer* deserializer_ = nullptr;
  const char* clone_error_ = nullptr;
};

}  // namespace

SerializedMessage::~SerializedMessage() {
  if (scratch_owner_ != nullptr) {
    scratch_owner_->scratch_in_use = false;
  } else {
    free(data_);
  }
}

void ThrowDataCloneError(CloneEnvironment* environment, v8::Local<v8::String> message) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::Local<v8::Context> context = environment->context.Get(isolate);
  v8::Local<v8::Value> args[] = {message, Text(isolate, "DataCloneError")};
  v8::Local<v8::Object> error;
  if (environment->dom_exception.Get(isolate)->NewInstance(context, 2, args).ToLocal(&error)) {
    isolate->ThrowException(error);
  }
}

Napi::Object NewPortObject(Napi::Env env, v8::Global<v8::ObjectTemplate>* port_template) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (port_template->IsEmpty()) {
    v8::Local<v8::ObjectTemplate> created = v8::ObjectTemplate::New(isolate);
    // Exactly one internal field: V8's serializer hands such objects to WriteHostObject.
    created->SetInternalFieldCount(1);
    port_template->Reset(isolate, created);
  }
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  v8::Local<v8::Object> object =
      port_template->Get(isolate)->NewInstance(context).ToLocalChecked();
  object->SetAlignedPointerInInternalField(0, const_cast<int*>(&kPortTag));
  return Napi::Object(env, FromV8(object));
}

bool IsPortObject(Napi::Value value) {
  v8::Local<v8::Value> local = ToV8(value);
  if (!local->IsObject()) return false;
  v8::Local<v8::Object> object = local.As<v8::Object>();
  return object->InternalFieldCount() == 1 &&
         object->GetAlignedPointerFromInternalField(0) == &kPortTag;
}

bool Serialize(CloneEnvironment* environment, Napi::Value value,
               const std::vector<Napi::Object>& objects,
               const std::vector<Napi::ArrayBuffer>& transfers, SerializedMessage* out) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::Local<v8::Context> context = environment->context.Get(isolate);
  WriteDelegate delegate(environment, isolate, objects);
  v8::ValueSerializer serializer(isolate, &delegate);
  delegate.set_serializer(&serializer);
  for (uint32_t i = 0; i < transfers.size(); i++) {
    serializer.TransferArrayBuffer(i, ToV8(transfers[i]).As<v8::ArrayBuffer>());
  }
  serializer.WriteHeader();
  if (serializer.WriteValue(context, ToV8(value)).IsNothing()) return false;
  std::pair<uint8_t*, size_t> bytes = serializer.Release();
  out->data_ = bytes.first;
  out->size_ = bytes.second;
  if (bytes.first == environment->scratch.data()) out->scratch_owner_ = environment;
  return true;
}

Napi::Value Deserialize(CloneEnvironment* environment, Napi::Env env, const uint8_t* data,
                        size_t size, const std::vector<Napi::Object>& objects,
                        const std::vector<Napi::ArrayBuffer>& transfers, bool* failed) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::Local<v8::Context> context = environment->context.Get(isolate);
  v8::Local<v8::Value> error;
  {
    v8::TryCatch try_catch(isolate);
    ReadDelegate delegate(objects);
    v8::ValueDeserializer deserializer(isolate, data, size, &delegate);
    delegate.set_deserializer(&deserializer);
    for (uint32_t i = 0; i < transfers.size(); i++) {
      deserializer.TransferArrayBuffer(i, ToV8(transfers[i]).As<v8::ArrayBuffer>());
    }
    v8::Local<v8::Value> result;
    if (size > 0 && deserializer.ReadHeader(context).FromMaybe(false) &&
        deserializer.ReadValue(context).ToLocal(&result)) {
      *failed = false;
      return Napi::Value(env, FromV8(result));
    }
    if (delegate.clone_error() != nullptr) {
      *failed = true;
      return NewDataCloneError(environment, env, delegate.clone_error());
    }
    if (try_catch.HasCaught()) error = try_catch.Exception();
  }
  *failed = true;
  if (error.IsEmpty()) return NewDataCloneError(environment, env, "Unable to deserialize cloned data.");
  return Napi::Value(env, FromV8(error));
}

Napi::ArrayBuffer NewMappedArrayBuffer(Napi::Env env, void* data, size_t length,
                                       size_t mapped_length) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> store = v8::ArrayBuffer::NewBackingStore(
      data, length,
      [](void* start, size_t, void* mapped) {
        os::Unmap(start, reinterpret_cast<size_t>(mapped));  // any thread may run this
      },
      reinterpret_cast<void*>(mapped_length));
  v8::Local<v8::ArrayBuffer> buffer = v8::ArrayBuffer::New(isolate, std::move(store));
  return Napi::ArrayBuffer(env, FromV8(buffer));
}

Napi::Value NewDataCloneError(CloneEnvironment* environment, Napi::Env env, const char* message) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::TryCatch try_catch(isolate);
  ThrowDataCloneError(environment, Text(isolate, message));
  if (!try_catch.HasCaught()) return env.Undefined();
  return Napi::Value(env, FromV8(try_catch.Exception()));
}

}  // namespace crossport
