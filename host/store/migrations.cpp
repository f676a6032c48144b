// The migrations are SQL files, host/store/migrations/NNN_name.sql, compiled in at configure
// time by host/store/migrations/embed.cmake (jr_migrations.inc, jr_privileges.inc).
#include "migrations.hpp"

namespace jr {

const char* privileges_sql() {
  static const char* const sql =
#include "jr_privileges.inc"
      ;
  return sql;
}

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> all = {
#include "jr_migrations.inc"
  };
  return all;
}

}  // namespace jr
