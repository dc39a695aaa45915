// A stand-in for the part of libuv that native/link.cc uses (poll and timer handles), so that a
// fuzz target can build real Links without an event loop: it records what each handle asks
// for, and RunLoopTurn() delivers what a real loop would (poll events from the socket's actual
// state, timers on request, close callbacks).
#pragma once

#include <uv.h>

namespace fake_uv {

// One turn: each started poll handle whose socket is ready gets its callback (as libuv reports
// readiness, hang-ups and errors); each started timer fires if `fire_timers`; then handles
// being closed get their close callbacks.
void RunLoopTurn(bool fire_timers);
// Turns until no handle is being closed.
void RunCloseCallbacks();
// Handles started or not yet closed (0 once everything a test made is gone).
int OpenHandles();

}  // namespace fake_uv
