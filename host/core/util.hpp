// Small parsing helpers shared by the CLI, the config loader and the engine. Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace jr {

// "250ms", "30s", "5m", "2h", "1d" or a bare number of seconds ("1.5"). Throws
// std::invalid_argument naming the bad text.
double parse_duration_seconds(std::string_view text);

// Splits "a,b, c" into {"a","b","c"}; empty items are dropped.
std::vector<std::string> split_list(std::string_view text, char sep = ',');

// A PostgreSQL array literal ({"a","b"}) for a text[] parameter.
std::string pg_text_array(const std::vector<std::string>& items);
// A PostgreSQL array literal for an int[] / bigint[] parameter.
std::string pg_int_array(const std::vector<int64_t>& items);

// Parses "60,300,900" into seconds; throws std::invalid_argument on bad input.
std::vector<int> parse_retry_schedule(std::string_view text);

// Seconds until an attempt is retried: the schedule's entry for this attempt (the last entry once
// attempts outrun it), or exponential backoff with full jitter when the schedule is empty:
// min(cap, base * 2^(attempt-1)) * U[0.5, 1.0).
double retry_delay_seconds(const std::vector<int>& schedule, int attempt, double jitter01);

// Seconds since the epoch as PostgreSQL writes a timestamptz in JSON, to the microsecond:
// "2026-12-06T23:10:55.123456+00:00" (also what a COPY into a timestamptz column accepts).
std::string utc_timestamp(double epoch_seconds);

// `what`, ": " and the text of the current errno ("mkdir /x: Permission denied"). Read errno
// before anything else can change it: the argument is built first, then errno is read here.
std::string errno_message(const std::string& what);

// "hostname-pid-xxxx": a runner's identity in leases and the worker registry.
std::string make_worker_id();

// The runner's state directory (the managed PostgreSQL's data directory is `<it>/pg`, the
// approvals file `<it>/approvals.json`): $RUNNER_DATA_DIR, else /var/lib/jobrunner as root,
// else $XDG_DATA_HOME/jobrunner (or ~/.local/share/jobrunner).
std::string runner_state_dir();

// `text` as valid UTF-8 for a text column: every ill-formed sequence (stray or truncated bytes,
// overlong forms, surrogates, beyond U+10FFFF) and every NUL becomes U+FFFD. Text a plugin sends
// (errors, progress steps) is untrusted: the database refuses invalid UTF-8, which would make
// the attempt's outcome unwritable.
std::string valid_utf8(std::string_view text);

}  // namespace jr
