// Batches with callbacks (issue 23, docs/job-model.md "Batches"), applied as migration 17
// (host/store/migrations.cpp lists it): jr_batches, the counting triggers on jr_jobs_done,
// jr_batch_enqueue() and jr_batch_status(), both granted to jobrunner_producer (kPrivileges).
//
// A constant string; no state.
#pragma once

namespace jr {

// v17: jr_batches, jr_batch_enqueue(kind, payloads, options, on_complete, on_failure),
// jr_batch_status(id), and the triggers that count finished members and enqueue the callback.
extern const char* const kMigrationV17;

}  // namespace jr
