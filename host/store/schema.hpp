// Schema of the operations features, applied as migrations (host/store/migrations.cpp lists them):
// v5 jr_enqueue() for enqueueing from SQL in any language, and the webhook outbox; v9 jr_enqueue()
// with the option rules of host/store/job_options.cpp, the runner of each attempt, and the
// timeout_ms of finished jobs in jr_jobs_all.
#pragma once

namespace jr::ops {

extern const char* const kMigrationV5;
extern const char* const kMigrationV9;

}  // namespace jr::ops
