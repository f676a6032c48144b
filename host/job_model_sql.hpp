// Schema of the job model for real applications (issue 23, docs/job-model.md), applied as
// migrations 14 and 15 (host/migrations.cpp lists them).
//
// Constant strings; no state.
#pragma once

namespace jr {

// v14: uniqueness over a period and chosen states, replace and debounce. jr_enqueue_ex() is the
// one implementation (jr_enqueue() and Store::JobInsertEx call it when any of these options is
// given); jr_unique_locks serialises the enqueues of one key.
extern const char* const kMigrationV14;

}  // namespace jr
