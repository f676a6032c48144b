// Shared plumbing of the `runner` subcommands: the validators of their arguments, resolving the
// database (configured URL or the managed local cluster), opening a migrated Store, and printing
// jobs.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "config.hpp"
#include "store.hpp"

namespace jr::cli {

// Exit codes, documented in the README.
constexpr int kExitOk = 0;
constexpr int kExitError = 1;     // runtime failure (database, plugin, I/O)
constexpr int kExitUsage = 2;     // bad flags, bad config, bad input
constexpr int kExitNotFound = 3;  // no such job

// A job id argument: 1 .. 2^63-1, digits only (CLI11 alone would clamp 99999999999999999999 to
// the largest id).
extern const CLI::Validator kJobId;
// A time argument (--since, --before): ISO 8601, checked here rather than by the database.
extern const CLI::Validator kIsoTime;

// The database URL to use: the configured one, or the managed cluster's (started if needed).
std::string resolve_database(const Config& cfg);

// Connects and applies migrations.
std::unique_ptr<Store> open_store(const Config& cfg);

// resolve_database, with the schema migrated: for commands that open their own connections.
std::string migrated_database(const Config& cfg);

// Human-readable rendering of a job row (JSON from Store::JobGet).
std::string render_job(const std::string& job_json);

// Which runner ran each attempt of a job row (JSON from Store::JobGet): an array of
// {"attempt", "worker_id", "host", "outcome"} in attempt order, from the error entries of failed
// attempts, the completed attempt's worker_id/worker_host and a running attempt's lease owner.
nlohmann::json job_runs(const nlohmann::json& job);

}  // namespace jr::cli
