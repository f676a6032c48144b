// Schema of the job model for real applications (issue 23, docs/job-model.md), applied as
// migrations 14 and 15 (host/store/migrations.cpp lists them).
//
// Constant strings; no state.
#pragma once

namespace jr {

// v14: uniqueness over a period and chosen states, replace and debounce. jr_enqueue_ex() is the
// one implementation (jr_enqueue() and Store::JobInsertEx call it when any of these options is
// given); jr_unique_locks serialises the enqueues of one key.
extern const char* const kMigrationV14;

// v15: per-tenant rate limits. Buckets in jr_rate_limits for any rate key ("tenant:42") and
// default patterns ("tenant:*", from which the runners make one bucket per key as they meet
// it: pattern names it); an index of the available rate-keyed jobs by key for the claim.
extern const char* const kMigrationV15;
// v20: rate keys from a payload field named per kind (jr_rate_key_fields and its trigger).
extern const char* const kMigrationV20;

}  // namespace jr
