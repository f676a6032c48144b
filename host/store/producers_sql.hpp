// The SQL API for producers in other languages (issue 23, docs/job-model.md "Producers"),
// applied as migration 16 (host/store/migrations.cpp lists it): jr_enqueue_many(), many jobs from a
// JSON array in one call, and jr_job_status(), a job's state and result by id. Both are granted
// to the role jobrunner_producer with jr_enqueue() (kPrivileges in host/store/migrations.cpp).
//
// A constant string; no state.
#pragma once

namespace jr {

// v16: jr_enqueue_many(kind, payloads, options) and jr_job_status(id).
extern const char* const kMigrationV16;

}  // namespace jr
