// Ports handed to another thread of this process (a worker_threads Worker) outside our own
// messages: the port's state is deposited here under a number, which Node's own postMessage can
// carry, and withdrawn once by the thread that receives the number. File descriptors belong to
// the process, so this table is process-wide (the one exception to per-environment state).
#pragma once

#include <cstdint>

#include "link.h"

namespace crossport {

// Takes `state`; returns its number (never 0).
uint64_t DepositPort(LinkState* state);
// Takes the state deposited under `id` into *state; false when there is none (or it was taken).
bool WithdrawPort(uint64_t id, LinkState* state);

}  // namespace crossport
