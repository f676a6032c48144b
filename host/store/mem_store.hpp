// The in-memory Store: the job model of the PostgreSQL store (store.hpp) kept in the process,
// for tests of the engine's decisions that need no database: a `memory://NAME` URL opens a
// Store on the in-memory database NAME (made on first use), shared by every Store opened on
// the same NAME in this process, as connections share one PostgreSQL database. Its now() is a
// Clock (core/clock.hpp), so a test moves time instead of sleeping.
//
// What it keeps: the job lifecycle (insert with defaults, delays, ttl, unique keys, lock keys and
// dependencies; claim with fairness across queues, priorities and paused queues; finish with
// fencing; retry, snooze, release; lease renewal, orphaned claims, rescue of expired leases;
// promotion of due jobs; dependencies; priority aging; ttl expiry; pruning; cancel and retry;
// the dead-letter queue; finalizers; leader leases; the worker registry; kind defaults;
// new-job notifications). What it refuses with a StoreError naming the feature: rate limits and
// rate keys, uniqueness over a period (replace, debounce), batches, workflows, webhooks, cron
// entries, run_at given as text other than ISO 8601. The contract suite (tests/host/
// store_contract_test.cpp) runs the same cases on both stores, so the two cannot drift apart.
#pragma once

#include <memory>
#include <string>

#include "clock.hpp"
#include "store.hpp"

namespace jr {

// True for "memory://NAME" (Store::open then opens an in-memory store).
bool is_memory_url(const std::string& url);
std::unique_ptr<Store> open_memory_store(const std::string& url);
// From now on the database of `url` reads its now() from `clock` (made if missing). Tests.
void memory_store_use_clock(const std::string& url, std::shared_ptr<const Clock> clock);
// Forgets the database of `url`: the next open starts empty. Tests.
void memory_store_drop(const std::string& url);

}  // namespace jr
