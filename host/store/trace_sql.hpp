// Schema of OpenTelemetry traces for jobs (issue 23, docs/job-model.md "OpenTelemetry traces"),
// applied as migration 19 (host/store/migrations.cpp lists it).
//
// A constant string; no state.
#pragma once

namespace jr {

// v19: the job option "traceparent" in SQL: jr_enqueue_option_keys() gains it (appended to
// whatever list the earlier migrations left), jr_traceparent_check() restates
// trace::traceparent_refusal(), and jr_enqueue_ex() becomes a wrapper that checks it and keeps
// it in the new job's options.traceparent around the rules of the earlier jr_enqueue_ex(), now
// named jr_enqueue_ex_untraced().
extern const char* const kMigrationV19;

}  // namespace jr
