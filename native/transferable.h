// How the bytes of a transferred ArrayBuffer (4 MiB or more) reach another process.
//
// An ArrayBuffer from allocateTransferable() lives in a shared-memory object from the start,
// mapped here read-write. Transferring it hands the object over: this side's mapping is
// replaced first (so nothing here can write it any more), then the object is sealed against
// writes, growth and shrinking, and its fd travels with the message; the receiver checks the
// seals and the size and maps it copy-on-write. No byte is copied.
// The receiver's buffer is such a buffer too: passed on again with no copy while this process
// has not written to it, copied once it has (its written pages are private to it).
// Any other ArrayBuffer is copied once into new sealed objects, in chunks, on every CPU.
#pragma once

#include <napi.h>

#include <vector>

#include "background.h"
#include "os.h"

namespace crossport {

// allocateTransferable(size), for lib/ (which validates `size`): a new ArrayBuffer of `size`
// bytes, zero-filled, over memory that can move to another process; null when the system
// cannot provide such memory (lib/ then makes an ordinary one).
Napi::Value AllocateTransferable(const Napi::CallbackInfo& info);

// A transferred buffer's bytes on their way out.
struct OutgoingBuffer {
  std::vector<int> chunks;  // sealed objects holding the bytes, in order (ours until sent)
  void* handed_over = nullptr;  // the allocation whose memory these are (no copy), for Undo
};

// Fills `out` for `buffer`: its own memory when it can move, else a copy. False (with `err`)
// when memory or fds run out; nothing is then taken.
bool PrepareOutgoing(Napi::ArrayBuffer buffer, Background* background, OutgoingBuffer* out,
                     os::SystemError* err);
// The message will not be sent: closes the chunks and gives a handed-over allocation its
// memory back (the same bytes, at the same address).
void UndoOutgoing(OutgoingBuffer* out);

// The ArrayBuffer over received chunks (taking their fds), or an empty value when they are not
// what a sender may send (see os::MapSealedChunks) or cannot be mapped; the fds are then closed.
Napi::Value AdoptIncoming(Napi::Env env, std::vector<int>* chunks);

}  // namespace crossport
