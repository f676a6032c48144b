// A database for each plugin that is granted one (issue 16, class 4): its own login role
// `jr_plugin_<name>` (no superuser, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS; a
// connection limit) owning one schema `plugin_<name>` and nothing else, with its search_path set
// to that schema, so its unqualified table names land there. It has no privilege on the jr_*
// tables and functions (migration v7 takes PUBLIC's away). The runner's role creates the role,
// (a member of it only while it gives it the schema on PostgreSQL < 16, a member without
// inheritance on 16+: the runner never uses a plugin's privileges, nor runs code a plugin put
// in its schema, by accident), and keeps its random password in
// jr_plugin_roles, a table only the runner's role can read, so every runner sharing the
// database hands the plugin the same password. A plugin without a grant gets no database_url.
//
// Names: `jr_plugin_<name>` / `plugin_<name>` when the plugin's name is lower-case letters,
// digits and `_` and short enough; otherwise a sanitised, shortened name with a hash suffix.
// Roles are per cluster, schemas per database: when `jr_plugin_<name>` belongs to another
// database of the same cluster (its COMMENT names the database), this database's role gets a
// suffix from the database's name. jr_plugin_roles records the names in use.
//
// Threading: PluginDatabases is used from the start-up thread only; the free functions are
// thread-safe (each opens its own connection).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace jr {

struct LoadedPlugin;

// A plugin's database grant that cannot be honoured (the runner's role cannot create roles or
// schemas, the role's name is taken, ...). The plugin is refused; the message says how to fix it.
class PluginDbRefused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string plugin_role_name(const std::string& plugin);    // jr_plugin_<name>
std::string plugin_schema_name(const std::string& plugin);  // plugin_<name>

struct PluginDbRole {
  std::string role;
  std::string schema;
  std::string url;  // the plugin's role, password included: only for the plugin's config
};

// Default CONNECTION LIMIT of a plugin's role (`[plugins.<name>] database_connection_limit`).
constexpr int kPluginConnectionLimit = 64;

// Creates (first time) or repairs (password, attributes, connection limit, schema owner,
// search_path) the role and schema of `plugin` on the database `runner_url` reaches, as the
// runner's role, in one transaction under an advisory lock (several runners may start at once).
// Needs migration v7 (jr_plugin_roles). Throws PluginDbRefused when the runner's role lacks a
// privilege it needs, pqxx errors when the database is unreachable.
PluginDbRole provision_plugin_database(const std::string& runner_url, const std::string& plugin,
                                       int connection_limit = kPluginConnectionLimit);

// The URL of the role provisioned for `plugin` on the database `runner_url` reaches, as the
// runner hands it to the plugin (`runner db url --plugin NAME`: for operators who seed or read
// a plugin's tables; do that as the plugin, never as a more privileged role, since a plugin's
// triggers and functions run as whoever touches its tables). Throws std::runtime_error when
// the plugin has no role there.
std::string stored_plugin_database_url(const std::string& runner_url, const std::string& plugin);

// The database_url each plugin's config gets.
class PluginDatabases {
 public:
  explicit PluginDatabases(std::string runner_url) : runner_url_(std::move(runner_url)) {}

  // "" for a plugin without a database grant (p.grants.database, decided by the trust model
  // from its manifest's request, the operator's configuration and approvals; its config then
  // has no database_url). The
  // operator's own `[plugins.<name>] database_url` is used as given. Otherwise the plugin's
  // role, provisioned on the runner's database (migrated first). Throws PluginError (the
  // plugin is refused, saying how to fix it) when the grant cannot be honoured; pqxx errors
  // when the database cannot be reached.
  std::string url_for(const LoadedPlugin& p, const nlohmann::json& all_sections);

 private:
  std::string runner_url_;
  bool migrated_ = false;
  std::map<std::string, std::string> cache_;
};

}  // namespace jr
