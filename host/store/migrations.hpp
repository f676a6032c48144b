// The schema, as versioned migrations embedded in the binary. Append new migrations at the end;
// never edit one that has shipped. Applied by Store::SchemaMigrate under an advisory lock.
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
