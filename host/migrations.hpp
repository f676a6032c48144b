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

// SQL that takes PUBLIC's privileges away from every jr_* object the current role owns in the
// current schema. SchemaMigrate runs it after applying migrations (v7 and any later one).
const char* revoke_public_sql();

}  // namespace jr
