#include "serializer.h"

#include "message.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace crossport {

namespace {

napi_value FromV8(v8::Local<v8::Value> local) { return ToNapi(local); }

// The tag in a port object's single internal field (its address is what counts).
const int kPortTag = 0x706f7274;

// V8 14 (Node 26) asks which kind of embedder data an aligned pointer is (the sandbox keeps
// kinds apart); earlier V8s have no such parameter. Node's own ObjectWrap uses the default kind.
void SetPortTag(v8::Local<v8::Object> object) {
#if V8_MAJOR_VERSION >= 14
  object->SetAlignedPointerInInternalField(0, const_cast<int*>(&kPortTag),
                                           v8::kEmbedderDataTypeTagDefault);
#else
  object->SetAlignedPointerInInternalField(0, const_cast<int*>(&kPortTag));
#endif
}

bool HasPortTag(v8::Local<v8::Object> object) {
#if V8_MAJOR_VERSION >= 14
  return object->GetAlignedPointerFromInternalField(0, v8::kEmbedderDataTypeTagDefault) ==
         &kPortTag;
#else
  return object->GetAlignedPointerFromInternalField(0) == &kPortTag;
#endif
}

v8::Local<v8::String> Text(v8::Isolate* isolate, const char* text) {
  return v8::String::NewFromUtf8(isolate, text).ToLocalChecked();
}

// What a host object in our bytes is. The serializer treats every ArrayBuffer view as a host
// object (so that a large buffer behind one can become a section): we write views ourselves.
enum class HostKind : uint32_t {
  kObject = 0,       // u32 index into the message's objects (ports, handle stand-ins)
  kView = 1,         // the buffer (a value), u32 ViewType, u64 byte offset, u64 byte length
  kOtherView = 2,    // a view V8 must write itself (over a resizable or shared buffer):
                     // u32 length, then that many bytes of a nested V8 serialization
};

enum class ViewType : uint32_t {
  kInt8, kUint8, kUint8Clamped, kInt16, kUint16, kInt32, kUint32, kFloat32, kFloat64,
  kBigInt64, kBigUint64, kDataView,
};

ViewType TypeOf(v8::Local<v8::ArrayBufferView> view) {
  if (view->IsUint8Array()) return ViewType::kUint8;
  if (view->IsInt8Array()) return ViewType::kInt8;
  if (view->IsUint8ClampedArray()) return ViewType::kUint8Clamped;
  if (view->IsInt16Array()) return ViewType::kInt16;
  if (view->IsUint16Array()) return ViewType::kUint16;
  if (view->IsInt32Array()) return ViewType::kInt32;
  if (view->IsUint32Array()) return ViewType::kUint32;
  if (view->IsFloat32Array()) return ViewType::kFloat32;
  if (view->IsFloat64Array()) return ViewType::kFloat64;
  if (view->IsBigInt64Array()) return ViewType::kBigInt64;
  if (view->IsBigUint64Array()) return ViewType::kBigUint64;
  return ViewType::kDataView;
}

size_t ElementSize(ViewType type) {
  switch (type) {
    case ViewType::kInt16: case ViewType::kUint16: return 2;
    case ViewType::kInt32: case ViewType::kUint32: case ViewType::kFloat32: return 4;
    case ViewType::kFloat64: case ViewType::kBigInt64: case ViewType::kBigUint64: return 8;
    default: return 1;
  }
}

v8::Local<v8::ArrayBufferView> NewView(ViewType type, v8::Local<v8::ArrayBuffer> buffer,
                                       size_t offset, size_t length) {
  size_t count = length / ElementSize(type);
  switch (type) {
    case ViewType::kInt8: return v8::Int8Array::New(buffer, offset, count);
    case ViewType::kUint8: return v8::Uint8Array::New(buffer, offset, count);
    case ViewType::kUint8Clamped: return v8::Uint8ClampedArray::New(buffer, offset, count);
    case ViewType::kInt16: return v8::Int16Array::New(buffer, offset, count);
    case ViewType::kUint16: return v8::Uint16Array::New(buffer, offset, count);
    case ViewType::kInt32: return v8::Int32Array::New(buffer, offset, count);
    case ViewType::kUint32: return v8::Uint32Array::New(buffer, offset, count);
    case ViewType::kFloat32: return v8::Float32Array::New(buffer, offset, count);
    case ViewType::kFloat64: return v8::Float64Array::New(buffer, offset, count);
    case ViewType::kBigInt64: return v8::BigInt64Array::New(buffer, offset, count);
    case ViewType::kBigUint64: return v8::BigUint64Array::New(buffer, offset, count);
    case ViewType::kDataView: return v8::DataView::New(buffer, offset, length);
  }
  return {};
}

class WriteDelegate : public v8::ValueSerializer::Delegate {
 public:
  WriteDelegate(CloneEnvironment* environment, v8::Isolate* isolate,
                const std::vector<Napi::Object>& ports, std::vector<Section>* sections)
      : environment_(environment), isolate_(isolate), ports_(ports), sections_(sections) {}

  void set_serializer(v8::ValueSerializer* serializer) { serializer_ = serializer; }

  // `buffer` already has a transfer id (out of band).
  void NoteTransferred(v8::Local<v8::ArrayBuffer> buffer) { transferred_.push_back(buffer); }

  // Makes `buffer` a section, with the next transfer id, unless it has an id already.
  void AddSection(v8::Local<v8::ArrayBuffer> buffer, uint32_t first_id) {
    for (v8::Local<v8::ArrayBuffer> known : transferred_) {
      if (known->StrictEquals(buffer)) return;
    }
    std::shared_ptr<v8::BackingStore> store = buffer->GetBackingStore();
    if (store->IsShared() || store->IsResizableByUserJavaScript() ||
        sections_->size() >= kMaxSectionsPerMessage) {
      return;  // V8 writes it inline
    }
    serializer_->TransferArrayBuffer(first_id + static_cast<uint32_t>(sections_->size()), buffer);
    transferred_.push_back(buffer);
    sections_->push_back(Section{std::move(store), buffer->ByteLength()});
  }

  void set_first_section_id(uint32_t id) { first_section_id_ = id; }

  void ThrowDataCloneError(v8::Local<v8::String> message) override {
    crossport::ThrowDataCloneError(environment_, message);
  }

  v8::Maybe<bool> WriteHostObject(v8::Isolate* isolate, v8::Local<v8::Object> object) override {
    if (object->IsArrayBufferView()) return WriteView(isolate, object.As<v8::ArrayBufferView>());
    for (size_t i = 0; i < ports_.size(); i++) {
      if (ToV8(ports_[i])->StrictEquals(object)) {
        serializer_->WriteUint32(static_cast<uint32_t>(HostKind::kObject));
        serializer_->WriteUint32(static_cast<uint32_t>(i));
        return v8::Just(true);
      }
    }
    if (IsPortObject(Napi::Value(nullptr, FromV8(object)))) {
      // As this Node throws it (a TypeError with a code in Node 20, a DataCloneError later).
      v8::Local<v8::Context> context = isolate->GetCurrentContext();
      v8::Local<v8::Value> error;
      if (environment_->missing_transferable.Get(isolate)
              ->Call(context, v8::Undefined(isolate), 0, nullptr)
              .ToLocal(&error)) {
        isolate->ThrowException(error);
      }
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

  // The hooks below restate V8's defaults. Overriding every virtual of the delegate keeps V8's
  // own definitions out of our vtables, whose entries the loader must resolve when it opens the
  // binary: so a binary built for another Node opens, and Init refuses it with a clear error
  // (see RefuseOtherNodeAbi in addon.cc), instead of dlopen failing on a V8 symbol that Node
  // lacks. The V8 of Node 20 (11.3) has neither HasCustomHostObject nor IsHostObject.
#if V8_MAJOR_VERSION >= 12
  bool HasCustomHostObject(v8::Isolate*) override { return false; }

  v8::Maybe<bool> IsHostObject(v8::Isolate*, v8::Local<v8::Object> object) override {
    return v8::Just(object->InternalFieldCount() > 0);  // unused: HasCustomHostObject is false
  }
#endif

  // Shared structs and arrays (--harmony-struct) cannot reach another process.
  bool AdoptSharedValueConveyor(v8::Isolate* isolate, v8::SharedValueConveyor&&) override {
    ThrowDataCloneError(Text(isolate, "#<Object> could not be cloned."));
    return false;
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
  v8::Maybe<bool> WriteView(v8::Isolate* isolate, v8::Local<v8::ArrayBufferView> view) {
    v8::Local<v8::Context> context = isolate->GetCurrentContext();
    v8::Local<v8::ArrayBuffer> buffer = view->Buffer();
    if (buffer->IsSharedArrayBuffer() || buffer->GetBackingStore()->IsResizableByUserJavaScript()) {
      return WriteOtherView(isolate, context, view);
    }
    if (buffer->ByteLength() >= kSectionMinSize) AddSection(buffer, first_section_id_);
    serializer_->WriteUint32(static_cast<uint32_t>(HostKind::kView));
    // Written first, as V8 writes a view's buffer: a detached one throws V8's own error here.
    if (serializer_->WriteValue(context, buffer).IsNothing()) return v8::Nothing<bool>();
    serializer_->WriteUint32(static_cast<uint32_t>(TypeOf(view)));
    serializer_->WriteUint64(view->ByteOffset());
    serializer_->WriteUint64(view->ByteLength());
    return v8::Just(true);
  }

  // A view whose length may follow its buffer's, or over shared memory: V8's own bytes, from a
  // serializer of its own (the buffer is then not shared with the rest of the message).
  v8::Maybe<bool> WriteOtherView(v8::Isolate* isolate, v8::Local<v8::Context> context,
                                 v8::Local<v8::ArrayBufferView> view) {
    std::vector<Napi::Object> no_objects;
    std::vector<Section> no_sections;
    WriteDelegate delegate(environment_, isolate, no_objects, &no_sections);
    v8::ValueSerializer nested(isolate, &delegate);
    delegate.set_serializer(&nested);
    nested.WriteHeader();
    if (nested.WriteValue(context, view).IsNothing()) return v8::Nothing<bool>();
    std::pair<uint8_t*, size_t> bytes = nested.Release();
    bool fits = bytes.second <= UINT32_MAX;
    if (fits) {
      serializer_->WriteUint32(static_cast<uint32_t>(HostKind::kOtherView));
      serializer_->WriteUint32(static_cast<uint32_t>(bytes.second));
      serializer_->WriteRawBytes(bytes.first, bytes.second);
    }
    delegate.FreeBufferMemory(bytes.first);
    if (!fits) ThrowDataCloneError(Text(isolate, "Data cannot be cloned, out of memory."));
    return fits ? v8::Just(true) : v8::Nothing<bool>();
  }

  CloneEnvironment* environment_;
  v8::Isolate* isolate_;
  const std::vector<Napi::Object>& ports_;
  std::vector<Section>* sections_;
  std::vector<v8::Local<v8::ArrayBuffer>> transferred_;  // buffers with a transfer id
  uint32_t first_section_id_ = 0;
  v8::ValueSerializer* serializer_ = nullptr;
};

// V8 runs the deserializer's delegate where JavaScript may not run, so it cannot construct a
// DOMException there: it records the message, throws a placeholder, and Deserialize builds the
// DataCloneError once V8 has returned.
class ReadDelegate : public v8::ValueDeserializer::Delegate {
 public:
  explicit ReadDelegate(const std::vector<Napi::Object>& ports)
      : ports_(ports), referenced_(ports.size(), false) {}

  void set_deserializer(v8::ValueDeserializer* deserializer) { deserializer_ = deserializer; }
  const char* clone_error() const { return clone_error_; }
  // Which of the host objects the value holds.
  const std::vector<bool>& referenced() const { return referenced_; }

  v8::MaybeLocal<v8::Object> ReadHostObject(v8::Isolate* isolate) override {
    uint32_t kind;
    if (!deserializer_->ReadUint32(&kind)) return Fail(isolate, kUnreadable);
    switch (static_cast<HostKind>(kind)) {
      case HostKind::kObject: {
        uint32_t index;
        if (!deserializer_->ReadUint32(&index) || index >= ports_.size()) {
          return Fail(isolate, kUnreadable);
        }
        referenced_[index] = true;
        return ToV8(ports_[index]).As<v8::Object>();
      }
      case HostKind::kView:
        return ReadView(isolate);
      case HostKind::kOtherView:
        return ReadOtherView(isolate);
    }
    return Fail(isolate, kUnreadable);
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

  // Our serializer never writes shared values (see AdoptSharedValueConveyor): a peer lied.
  const v8::SharedValueConveyor* GetSharedValueConveyor(v8::Isolate* isolate) override {
    Fail(isolate, kUnreadable);
    return nullptr;
  }

 private:
  static constexpr const char* kUnreadable = "Unable to deserialize cloned data.";

  // Checked as V8 checks the views it reads itself.
  v8::MaybeLocal<v8::Object> ReadView(v8::Isolate* isolate) {
    v8::Local<v8::Value> value;
    if (!deserializer_->ReadValue(isolate->GetCurrentContext()).ToLocal(&value)) return {};
    uint32_t type;
    uint64_t offset, length;
    if (!value->IsArrayBuffer() || !deserializer_->ReadUint32(&type) ||
        type > static_cast<uint32_t>(ViewType::kDataView) || !deserializer_->ReadUint64(&offset) ||
        !deserializer_->ReadUint64(&length)) {
      return Fail(isolate, kUnreadable);
    }
    v8::Local<v8::ArrayBuffer> buffer = value.As<v8::ArrayBuffer>();
    size_t size = ElementSize(static_cast<ViewType>(type));
    uint64_t available = buffer->ByteLength();
    if (offset > available || length > available - offset || offset % size != 0 ||
        length % size != 0) {
      return Fail(isolate, kUnreadable);
    }
    return NewView(static_cast<ViewType>(type), buffer, offset, length);
  }

  v8::MaybeLocal<v8::Object> ReadOtherView(v8::Isolate* isolate) {
    uint32_t length;
    const void* bytes;
    if (!deserializer_->ReadUint32(&length) || !deserializer_->ReadRawBytes(length, &bytes)) {
      return Fail(isolate, kUnreadable);
    }
    std::vector<Napi::Object> none;
    ReadDelegate delegate(none);
    v8::ValueDeserializer nested(isolate, static_cast<const uint8_t*>(bytes), length, &delegate);
    delegate.set_deserializer(&nested);
    v8::Local<v8::Context> context = isolate->GetCurrentContext();
    v8::Local<v8::Value> view;
    if (nested.ReadHeader(context).FromMaybe(false) && nested.ReadValue(context).ToLocal(&view) &&
        view->IsArrayBufferView()) {
      return view.As<v8::Object>();
    }
    if (delegate.clone_error() != nullptr) clone_error_ = delegate.clone_error();
    if (clone_error_ == nullptr) return Fail(isolate, kUnreadable);
    return {};
  }

  v8::MaybeLocal<v8::Object> Fail(v8::Isolate* isolate, const char* message) {
    clone_error_ = message;
    isolate->ThrowException(v8::Exception::Error(Text(isolate, message)));
    return {};
  }

  const std::vector<Napi::Object>& ports_;
  std::vector<bool> referenced_;
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
  SetPortTag(object);
  return Napi::Object(env, FromV8(object));
}

bool IsResizable(Napi::ArrayBuffer buffer) {
  return ToV8(buffer).As<v8::ArrayBuffer>()->GetBackingStore()->IsResizableByUserJavaScript();
}

bool IsPortObject(Napi::Value value) {
  v8::Local<v8::Value> local = ToV8(value);
  if (!local->IsObject()) return false;
  v8::Local<v8::Object> object = local.As<v8::Object>();
  return object->InternalFieldCount() == 1 && HasPortTag(object);
}

bool Serialize(CloneEnvironment* environment, Napi::Value value,
               const std::vector<Napi::Object>& objects,
               const std::vector<Napi::ArrayBuffer>& transfers,
               const std::vector<Napi::ArrayBuffer>& carried, SerializedMessage* out) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::Local<v8::Context> context = environment->context.Get(isolate);
  WriteDelegate delegate(environment, isolate, objects, &out->sections_);
  v8::ValueSerializer serializer(isolate, &delegate);
  delegate.set_serializer(&serializer);
  serializer.SetTreatArrayBufferViewsAsHostObjects(true);
  for (uint32_t i = 0; i < transfers.size(); i++) {
    v8::Local<v8::ArrayBuffer> buffer = ToV8(transfers[i]).As<v8::ArrayBuffer>();
    serializer.TransferArrayBuffer(i, buffer);
    delegate.NoteTransferred(buffer);
  }
  auto first_section = static_cast<uint32_t>(transfers.size());
  delegate.set_first_section_id(first_section);
  for (const Napi::ArrayBuffer& buffer : carried) {
    delegate.AddSection(ToV8(buffer).As<v8::ArrayBuffer>(), first_section);
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
                        const std::vector<Napi::ArrayBuffer>& transfers, bool* failed,
                        std::vector<bool>* referenced) {
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
      if (referenced != nullptr) *referenced = delegate.referenced();
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

Napi::ArrayBuffer NewExternalArrayBuffer(Napi::Env env, void* data, size_t length,
                                         void (*release)(void* data, size_t length, void* owner),
                                         void* owner) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> store =
      v8::ArrayBuffer::NewBackingStore(data, length, release, owner);
  v8::Local<v8::ArrayBuffer> buffer = v8::ArrayBuffer::New(isolate, std::move(store));
  return Napi::ArrayBuffer(env, FromV8(buffer));
}

std::shared_ptr<v8::BackingStore> BackingStoreOf(Napi::ArrayBuffer buffer) {
  return ToV8(buffer).As<v8::ArrayBuffer>()->GetBackingStore();
}

Napi::Value NewDataCloneError(CloneEnvironment* environment, Napi::Env env, const char* message) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::TryCatch try_catch(isolate);
  ThrowDataCloneError(environment, Text(isolate, message));
  if (!try_catch.HasCaught()) return env.Undefined();
  return Napi::Value(env, FromV8(try_catch.Exception()));
}

}  // namespace crossport
