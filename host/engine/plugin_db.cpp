#include "plugin_db.hpp"

#include <cstdio>
#include <pqxx/pqxx>

#include "db_auth.hpp"
#include "log.hpp"
#include "plugin_loader.hpp"
#include "store.hpp"

namespace jr {
namespace {

// Serialises provisioning among the runners of one database ("jobrun" + 2; + 1 is migrations).
constexpr int64_t kProvisionLockKey = 0x6a6f6272756e0002;
constexpr size_t kMaxIdentifier = 63;  // NAMEDATALEN - 1

// A stable 32-bit FNV-1a hash as 8 hex digits (names must not change between builds).
std::string hash8(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", h);
  return buf;
}

// `name` itself when it is a plain identifier of at most `max` bytes; otherwise a lower-cased,
// `_`-for-anything-else, shortened form plus a hash of the real name, so two plugin names never
// share an identifier.
std::string identifier_part(const std::string& name, size_t max) {
  bool plain = !name.empty() && name.size() <= max;
  for (char c : name) {
    plain = plain && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (plain) return name;
  std::string s;
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') {
      s += static_cast<char>(c - 'A' + 'a');
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      s += c;
    } else {
      s += '_';
    }
  }
  if (s.size() > max - 9) s.resize(max - 9);
  return s + "_" + hash8(name);
}

// Role names leave room for "_" + hash8(database): see pick_role().
constexpr size_t kRolePrefixLen = 10;  // "jr_plugin_"

std::string one(pqxx::work& tx, const std::string& sql) {
  auto r = tx.exec(sql);
  return r.empty() || r[0][0].is_null() ? std::string() : std::string(r[0][0].c_str());
}

// The role for `plugin` on this database: jr_plugin_<name> when it is free or already ours (its
// comment is `marker`), else the same with this database's hash (the first name belongs to
// another database of the cluster).
std::string pick_role(pqxx::work& tx, const std::string& plugin, const std::string& db,
                      const std::string& marker) {
  std::string base = plugin_role_name(plugin);
  std::vector<std::string> candidates = {base, base + "_" + hash8(db)};
  std::string taken;
  for (const auto& cand : candidates) {
    auto r = tx.exec_params(
        "SELECT coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles "
        "WHERE rolname = $1",
        cand);
    if (r.empty() || r[0][0].as<std::string>() == marker) return cand;
    taken += (taken.empty() ? "" : ", ") + cand + " (comment: '" + r[0][0].as<std::string>() + "')";
  }
  throw PluginDbRefused("the database roles " + taken +
                        " exist but were not created by jobrunner for this plugin on database '" +
                        db +
                        "'; drop them, or give the plugin a database explicitly with "
                        "[plugins." +
                        plugin + "] database_url");
}

PluginDbRole provision_once(pqxx::connection& c, const std::string& runner_url,
                            const std::string& plugin, int connection_limit) {
  pqxx::work tx(c);
  tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kProvisionLockKey) + ")");
  auto me = tx.exec(
      "SELECT current_user::text, current_database()::text, rolsuper OR rolcreaterole, "
      "current_setting('server_version_num')::int FROM pg_roles WHERE rolname = current_user");
  const std::string runner_role = me[0][0].as<std::string>();
  const std::string db = me[0][1].as<std::string>();
  const bool can_create_roles = me[0][2].as<bool>();
  const int server_version = me[0][3].as<int>();
  const std::string marker = "jobrunner: the role of plugin '" + plugin + "' on database '" + db +
                             "' (its password is in jr_plugin_roles there)";
  auto fix = [&](const std::string& what) {
    return PluginDbRefused("plugin '" + plugin + "' is granted a database, but " + what +
                           ". Give the runner's role that privilege, or give the plugin a "
                           "database explicitly: [plugins." +
                           plugin + "] database_url = \"...\"");
  };
  if (!can_create_roles) {
    throw fix("the runner's database role '" + runner_role +
              "' cannot create roles (it needs CREATEROLE)");
  }

  PluginDbRole out;
  std::string password;
  auto row = tx.exec_params(
      "SELECT role_name, schema_name, password FROM jr_plugin_roles WHERE plugin = $1", plugin);
  if (!row.empty()) {
    out.role = row[0][0].as<std::string>();
    out.schema = row[0][1].as<std::string>();
    password = row[0][2].as<std::string>();
  } else {
    out.role = pick_role(tx, plugin, db, marker);
    out.schema = plugin_schema_name(plugin);
    password = dbauth::random_password();
  }
  const std::string role = tx.quote_name(out.role);
  const std::string schema = tx.quote_name(out.schema);
  const std::string verifier = tx.quote(dbauth::scram_verifier(password));
  const std::string limit = std::to_string(connection_limit);

  auto attrs = tx.exec_params(
      "SELECT rolsuper, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = $1", out.role);
  if (attrs.empty()) {
    tx.exec("CREATE ROLE " + role + " WITH LOGIN NOINHERIT NOCREATEDB NOCREATEROLE " +
            "CONNECTION LIMIT " + limit + " PASSWORD " + verifier);
  } else {
    if (attrs[0][0].as<bool>() || attrs[0][1].as<bool>() || attrs[0][2].as<bool>()) {
      throw fix("its role " + out.role +
                " has SUPERUSER, REPLICATION or BYPASSRLS (which a plugin's role must not have; "
                "a superuser must take them away)");
    }
    // Repairs: a plugin may have changed its own password; an operator its attributes.
    tx.exec("ALTER ROLE " + role + " WITH LOGIN NOCREATEDB NOCREATEROLE CONNECTION LIMIT " + limit +
            " PASSWORD " + verifier);
  }
  tx.exec("COMMENT ON ROLE " + role + " IS " + tx.quote(marker));
  if (one(tx, "SELECT has_database_privilege(" + tx.quote(out.role) +
                  ", current_database(), 'CONNECT')") != "t") {
    if (one(tx, "SELECT has_database_privilege(current_database(), 'CONNECT WITH GRANT OPTION')") !=
        "t") {
      throw fix("its role " + out.role + " may not connect to database '" + db +
                "' and the runner's role cannot grant that");
    }
    tx.exec("GRANT CONNECT ON DATABASE " + tx.quote_name(db) + " TO " + role);
  }
  auto owner = tx.exec_params(
      "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = $1", out.schema);
  if (owner.empty()) {
    if (one(tx, "SELECT has_database_privilege(current_database(), 'CREATE')") != "t") {
      throw fix("the runner's database role '" + runner_role +
                "' cannot create schemas in database '" + db + "' (it needs CREATE on it)");
    }
    // CREATE SCHEMA ... AUTHORIZATION needs the runner's role to be a member of the plugin's.
    // PostgreSQL 16 and later: a member that does not inherit the plugin's privileges, kept.
    // Before 16 membership would inherit them (the runner's role must inherit, for the
    // privileges it has as a database owner): granted for this statement only.
    bool member = one(tx, "SELECT pg_has_role(current_user, " + tx.quote(out.role) + ", " +
                              (server_version >= 160000 ? "'SET'" : "'MEMBER'") + ")") == "t";
    if (!member) {
      tx.exec("GRANT " + role + " TO CURRENT_USER" +
              (server_version >= 160000 ? " WITH INHERIT FALSE, SET TRUE" : ""));
    }
    tx.exec("CREATE SCHEMA " + schema + " AUTHORIZATION " + role);
    if (!member && server_version < 160000) tx.exec("REVOKE " + role + " FROM CURRENT_USER");
  } else if (owner[0][0].as<std::string>() != out.role) {
    throw fix("its schema " + out.schema + " exists and belongs to '" +
              owner[0][0].as<std::string>() + "', not to the plugin's role " + out.role);
  }
  tx.exec("ALTER ROLE " + role + " SET search_path TO " + schema);
  tx.exec_params(
      "INSERT INTO jr_plugin_roles (plugin, role_name, schema_name, password) "
      "VALUES ($1, $2, $3, $4) ON CONFLICT (plugin) DO UPDATE SET role_name = EXCLUDED.role_name, "
      "schema_name = EXCLUDED.schema_name, password = EXCLUDED.password, updated_at = now()",
      plugin, out.role, out.schema, password);
  tx.commit();
  std::map<std::string, std::string> reached = {{"dbname", db}};
  if (const char* h = c.hostname(); h && *h) reached["host"] = h;
  if (const char* p = c.port(); p && *p) reached["port"] = p;
  out.url = dbauth::url_for_role(runner_url, out.role, password, reached);
  return out;
}

}  // namespace

std::string plugin_role_name(const std::string& plugin) {
  return "jr_plugin_" + identifier_part(plugin, kMaxIdentifier - kRolePrefixLen - 9);
}

std::string plugin_schema_name(const std::string& plugin) {
  return "plugin_" + identifier_part(plugin, kMaxIdentifier - 7);
}

PluginDbRole provision_plugin_database(const std::string& runner_url, const std::string& plugin,
                                       int connection_limit) {
  pqxx::connection c(runner_url);
  for (int attempt = 1;; ++attempt) {
    try {
      return provision_once(c, runner_url, plugin, connection_limit);
    } catch (const pqxx::insufficient_privilege& e) {
      throw PluginDbRefused(
          "plugin '" + plugin +
          "' is granted a database, but the runner's role was refused: " + e.what() +
          "Give the plugin a database explicitly with [plugins." + plugin + "] database_url");
    } catch (const pqxx::sql_error& e) {
      // Roles are per cluster: a runner of another database on the same server created the
      // same role at the same moment (unique violation on pg_authid). The next attempt sees it.
      // (libpqxx 6 leaves sqlstate() empty on its specific exception classes.)
      bool race = dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr ||
                  e.sqlstate() == "23505" || e.sqlstate() == "42710";
      if (!race || attempt >= 4) throw;
    }
  }
}

std::string stored_plugin_database_url(const std::string& runner_url, const std::string& plugin) {
  pqxx::connection c(runner_url);
  pqxx::read_transaction tx(c);
  auto r = tx.exec_params(
      "SELECT role_name, password, current_database()::text FROM jr_plugin_roles "
      "WHERE plugin = $1",
      plugin);
  if (r.empty()) {
    throw std::runtime_error("plugin '" + plugin +
                             "' has no database role here yet (a runner creates it when it "
                             "starts the plugin with a database grant)");
  }
  std::map<std::string, std::string> reached = {{"dbname", r[0][2].as<std::string>()}};
  if (const char* h = c.hostname(); h && *h) reached["host"] = h;
  if (const char* p = c.port(); p && *p) reached["port"] = p;
  return dbauth::url_for_role(runner_url, r[0][0].as<std::string>(), r[0][1].as<std::string>(),
                              reached);
}

std::string PluginDatabases::url_for(const LoadedPlugin& p, const nlohmann::json& all_sections) {
  nlohmann::json section = nlohmann::json::object();
  if (all_sections.is_object() && all_sections.contains(p.name) &&
      all_sections[p.name].is_object()) {
    section = all_sections[p.name];
  }
  if (section.contains("database_url") && section["database_url"].is_string()) {
    return section["database_url"].get<std::string>();  // the operator's choice
  }
  if (!p.grants.database) return "";  // the operator did not grant one (trust model)
  if (auto it = cache_.find(p.name); it != cache_.end()) return it->second;
  int limit = kPluginConnectionLimit;
  if (section.contains("database_connection_limit")) {
    const auto& v = section["database_connection_limit"];
    if (!v.is_number_integer() || v.get<int64_t>() < -1 || v.get<int64_t>() > 100000) {
      throw PluginError("plugin " + p.name +
                        ": database_connection_limit must be an integer from -1 (no limit) to "
                        "100000");
    }
    limit = static_cast<int>(v.get<int64_t>());
  }
  if (!migrated_) {
    Store::open(runner_url_)->SchemaMigrate();  // jr_plugin_roles (v7)
    migrated_ = true;
  }
  try {
    PluginDbRole r = provision_plugin_database(runner_url_, p.name, limit);
    log::info("plugin database role ready",
              {{"plugin", p.name}, {"role", r.role}, {"schema", r.schema}});
    cache_[p.name] = r.url;
    return r.url;
  } catch (const PluginDbRefused& e) {
    throw PluginError("plugin " + p.path + ": " + e.what());
  }
}

}  // namespace jr
