// Resumable, fingerprinted phases of a multi-step run (the base recipe, `mmb align`).
//
// A phase writes into its directory; a marker file inside it says it finished. Its fingerprint
// (fingerprint.h: its resolved settings and the fingerprint of the phase it starts from, so a
// change re-runs every phase after it too) is stored as <dir>/phase_fingerprint.json when it
// starts. A finished phase with the same fingerprint is skipped; an unfinished one with the same
// fingerprint runs again (a trainer inside resumes from its own checkpoints). A phase whose stored
// fingerprint differs is re-run from scratch and the log names the parts that changed; its old
// directory becomes <dir>.replaced (the previous one of those is removed). A finished phase with
// no stored fingerprint (a run directory from before fingerprints) is kept, with a warning.
#pragma once
#include <functional>
#include <string>

#include "mmb/fingerprint.h"
#include "mmb/json.h"

namespace mmb {

class RunDir;

// The fingerprint of a phase that starts from `previous`: {"previous phase": its id, name: settings}.
Fingerprint chained_fingerprint(const Fingerprint& previous, const std::string& name, const Json& settings);

// Runs `fn` unless the phase is done with the same fingerprint. Logs the phase and its wall time,
// records the time in times[name] and, when `run` is given, a {"phase", "seconds"} metrics line.
// Returns true when `fn` ran.
bool run_phase(const std::string& name, const std::string& dir, const std::string& done_marker,
               const Fingerprint& fingerprint, RunDir* run, Json& times, const std::function<void()>& fn);

}  // namespace mmb
