// A named SQL statement of the PostgreSQL store. The statements are written in
// host/store/sql/*.sql and compiled in by jr_sqlgen (host/store/sql/sqlgen.cpp) as constants of
// the generated header jr_sql.hpp (namespace jr::sql), internal to the store.
#pragma once

#include <vector>

namespace jr {

struct Statement {
  const char* name;  // its name in the .sql file, and its prepared statement's name
  const char* text;  // the SQL, fragments included and comments removed
  bool prepared;     // ":prepared": prepared once per connection (unless through PgBouncer)
};

// Every named statement, in file order (the PostgreSQL suite prepares each one against the
// migrated schema, so a statement no test runs still cannot name a column that is not there).
std::vector<Statement> named_statements();

// SQL expression: the database sessions of the runner of jr_workers row `w`, counted in
// pg_stat_activity by the application_name it gives them ("jobrunner PID@HOST", cut at 63
// bytes: ops/ui_publish.hpp). `runner info` (sql/ops.sql) and the dashboard's runner list
// (ops/ui_store.cpp) both count with it.
const char* runner_connections_sql();

}  // namespace jr
