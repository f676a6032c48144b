// The schema, as versioned migrations embedded in the binary: one SQL file each in
// host/store/migrations (NNN_name.sql, the first line "-- migration N: name"). Add a new one with
// the next number; never edit one that has shipped. Applied by Store::SchemaMigrate under an
// advisory lock, in version order; privileges.sql runs after every batch.
#pragma once

#include <vector>

namespace jr {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

const std::vector<Migration>& migrations();

// SQL that states the privileges of the runner's objects (nothing PUBLIC on any jr_* object of
// the current role in the current schema; jr_enqueue SECURITY DEFINER, executable by
// jobrunner_producer). SchemaMigrate runs it after applying migrations.
const char* privileges_sql();

}  // namespace jr
