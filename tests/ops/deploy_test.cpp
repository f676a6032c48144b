// The deployment files under deploy/: one Kubernetes Deployment per shipped plugin, checked by
// a strict YAML-subset parser and the fields a Deployment needs (and that our runner needs: the
// plugin's kinds, probes on /readyz and /healthz, secrets for the database URL); the systemd
// template unit, checked by `systemd-analyze verify` (must print nothing) with each job type's
// environment file.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <toml++/toml.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "harness.hpp"
#include "util.hpp"
#include "yaml_lite.hpp"

namespace fs = std::filesystem;

namespace jrtest {
namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The kinds a plugin registers, read from its sources: kinds.push_back({"kind", ...}) or
// kinds.push_back({kConst, ...}) with constexpr const char* kConst = "kind".
std::set<std::string> plugin_kinds(const fs::path& dir) {
  std::string src;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.path().extension() == ".cpp" || e.path().extension() == ".hpp") src += slurp(e.path());
  }
  std::map<std::string, std::string> consts;
  static const std::regex const_re(R"re((k\w+)\s*=\s*"([a-z0-9_]+)")re");
  for (std::sregex_iterator it(src.begin(), src.end(), const_re), end; it != end; ++it) {
    consts[(*it)[1]] = (*it)[2];
  }
  std::set<std::string> kinds;
  static const std::regex push_re(R"re(kinds\.push_back\(\{\s*(?:"([a-z0-9_]+)"|(k\w+)))re");
  for (std::sregex_iterator it(src.begin(), src.end(), push_re), end; it != end; ++it) {
    kinds.insert((*it)[1].matched ? (*it)[1].str() : consts.at((*it)[2]));
  }
  return kinds;
}

// The kinds an operator declares for a plugin whose kinds come from configuration (plugins/exec):
// kind = "..." of each [[plugins.<name>.kinds]] table of a runner config (parsed as TOML, so a
// broken example config fails here too).
std::set<std::string> configured_kinds(const std::string& toml_text, const std::string& plugin) {
  std::set<std::string> out;
  toml::table t = toml::parse(toml_text);
  if (auto* arr = t["plugins"][plugin]["kinds"].as_array()) {
    for (auto& e : *arr) {
      if (auto* tbl = e.as_table()) {
        if (auto k = (*tbl)["kind"].value<std::string>()) out.insert(*k);
      }
    }
  }
  return out;
}

// The runner.toml block of a ConfigMap under deploy/kubernetes/config/ (a `|` literal block,
// which the YAML subset above does not parse): its lines with the block's indentation removed.
std::string configmap_runner_toml(const fs::path& file) {
  std::istringstream in(slurp(file));
  std::string line, out;
  bool inside = false;
  size_t indent = std::string::npos;
  while (std::getline(in, line)) {
    if (!inside) {
      inside = line.find("runner.toml: |") != std::string::npos;
      continue;
    }
    size_t first = line.find_first_not_of(' ');
    if (first == std::string::npos) {
      out += "\n";
      continue;
    }
    if (indent == std::string::npos) indent = first;
    if (first < indent) break;
    out += line.substr(indent) + "\n";
  }
  return out;
}

// A plugin's kinds as deployed: those it registers itself, or, for a plugin whose kinds are
// configured (exec), those of the deployment's runner config.
std::set<std::string> deployed_kinds(const std::string& name, const fs::path& config) {
  auto kinds = plugin_kinds(source_dir() + "/plugins/" + name);
  if (!kinds.empty()) return kinds;
  if (!fs::exists(config)) return {};
  std::string text = config.extension() == ".toml" ? slurp(config) : configmap_runner_toml(config);
  return configured_kinds(text, name);
}

std::vector<std::string> shipped_plugins() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(source_dir() + "/plugins")) {
    if (fs::exists(e.path() / "CMakeLists.txt")) out.push_back(e.path().filename());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Checks a parsed Deployment; returns the problems found ("" when none).
std::string check_deployment(const nlohmann::json& d, const std::set<std::string>& kinds) {
  std::ostringstream p;
  auto str = [](const nlohmann::json& j, const char* k) {
    return j.is_object() && j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : "";
  };
  if (str(d, "apiVersion") != "apps/v1") p << "apiVersion must be apps/v1; ";
  if (str(d, "kind") != "Deployment") p << "kind must be Deployment; ";
  static const std::regex dns1123("[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?");
  if (!std::regex_match(str(d.value("metadata", nlohmann::json::object()), "name"), dns1123)) {
    p << "metadata.name must be a DNS-1123 label; ";
  }
  const auto spec = d.value("spec", nlohmann::json::object());
  if (!spec.value("replicas", nlohmann::json()).is_number_integer() || spec["replicas"] < 1) {
    p << "spec.replicas must be a positive integer; ";
  }
  auto match = spec.value("selector", nlohmann::json::object())
                   .value("matchLabels", nlohmann::json::object());
  auto tmpl = spec.value("template", nlohmann::json::object());
  auto labels =
      tmpl.value("metadata", nlohmann::json::object()).value("labels", nlohmann::json::object());
  if (match.empty()) p << "spec.selector.matchLabels is empty; ";
  for (auto& [k, v] : match.items()) {
    if (!labels.contains(k) || labels[k] != v) p << "selector label " << k << " not on the pod; ";
  }
  auto pod = tmpl.value("spec", nlohmann::json::object());
  auto containers = pod.value("containers", nlohmann::json::array());
  if (!containers.is_array() || containers.empty()) return p.str() + "no containers; ";
  const auto& c = containers[0];
  if (str(c, "name").empty() || str(c, "image").empty()) p << "container needs name and image; ";
  std::vector<std::string> args;
  for (const auto& a : c.value("args", nlohmann::json::array())) args.push_back(a);
  auto k = std::find(args.begin(), args.end(), "--kinds");
  if (k == args.end() || k + 1 == args.end()) {
    p << "args lack --kinds; ";
  } else {
    auto listed = jr::split_list(*(k + 1));
    if (std::set<std::string>(listed.begin(), listed.end()) != kinds) {
      p << "--kinds " << *(k + 1) << " differs from the plugin's kinds; ";
    }
  }
  std::map<std::string, nlohmann::json> env;
  for (const auto& e : c.value("env", nlohmann::json::array())) {
    std::string name = str(e, "name");
    if (name.empty()) p << "env entry without a name; ";
    if (e.contains("value") == e.contains("valueFrom")) {
      p << "env " << name << " needs exactly one of value and valueFrom; ";
    }
    if (e.contains("value") && !e["value"].is_string()) p << "env " << name << " not a string; ";
    env[name] = e;
  }
  if (!env.count("DATABASE_URL") || !env["DATABASE_URL"].contains("valueFrom")) {
    p << "DATABASE_URL must come from a Secret; ";
  }
  std::set<std::string> port_names;
  std::set<int64_t> port_numbers;
  for (const auto& port : c.value("ports", nlohmann::json::array())) {
    port_names.insert(str(port, "name"));
    if (port.value("containerPort", nlohmann::json()).is_number_integer()) {
      port_numbers.insert(port["containerPort"].get<int64_t>());
    }
  }
  std::string http = env.count("RUNNER_HTTP") ? str(env["RUNNER_HTTP"], "value") : "";
  if (http.empty() || !port_numbers.count(std::stoll(http.substr(http.rfind(':') + 1)))) {
    p << "RUNNER_HTTP must listen on a declared containerPort; ";
  }
  for (const char* probe : {"readinessProbe", "livenessProbe"}) {
    auto g = c.value(probe, nlohmann::json::object()).value("httpGet", nlohmann::json::object());
    std::string want = std::string(probe) == "readinessProbe" ? "/readyz" : "/healthz";
    if (str(g, "path") != want) p << probe << " must GET " << want << "; ";
    bool port_ok =
        g.contains("port") && (g["port"].is_string() ? port_names.count(g["port"]) > 0
                                                     : port_numbers.count(g["port"]) > 0);
    if (!port_ok) p << probe << " port is not a declared port; ";
  }
  double grace = env.count("RUNNER_SHUTDOWN_GRACE")
                     ? jr::parse_duration_seconds(str(env["RUNNER_SHUTDOWN_GRACE"], "value"))
                     : 30;
  if (!pod.value("terminationGracePeriodSeconds", nlohmann::json()).is_number_integer() ||
      pod["terminationGracePeriodSeconds"].get<double>() <= grace) {
    p << "terminationGracePeriodSeconds must exceed RUNNER_SHUTDOWN_GRACE; ";
  }
  return p.str();
}

TEST(YamlLite, ParsesTheSubsetAndRejectsTheRest) {
  auto j = parse_yaml_lite(
      "# c\na: 1\nb:\n  c: \"x # not a comment\"\n  d: [\"p\", q, 'r''s']\nl:\n  - n: 1\n"
      "    m: two\n  - plain\n");
  EXPECT_EQ(j["a"], 1);
  EXPECT_EQ(j["b"]["c"], "x # not a comment");
  EXPECT_EQ(j["b"]["d"], nlohmann::json::parse(R"(["p", "q", "r's"])"));
  EXPECT_EQ(j["l"][0]["m"], "two");
  EXPECT_EQ(j["l"][1], "plain");
  EXPECT_THROW(parse_yaml_lite("a: 1\na: 2\n"), YamlError);           // duplicate key
  EXPECT_THROW(parse_yaml_lite("a:\n\tb: 1\n"), YamlError);           // tab
  EXPECT_THROW(parse_yaml_lite("a:\n  b: 1\n   c: 2\n"), YamlError);  // indentation
  EXPECT_THROW(parse_yaml_lite("a: &x 1\n"), YamlError);              // anchor
  EXPECT_THROW(parse_yaml_lite("a: \"open\n"), YamlError);            // quote
  EXPECT_THROW(parse_yaml_lite("a:\nb: 1\n"), YamlError);             // missing value
}

TEST(Deploy, OneValidKubernetesDeploymentPerShippedPlugin) {
  auto plugins = shipped_plugins();
  ASSERT_GE(plugins.size(), 4u);
  for (const auto& name : plugins) {
    SCOPED_TRACE(name);
    fs::path file = source_dir() + "/deploy/kubernetes/" + name + ".yaml";
    ASSERT_TRUE(fs::exists(file)) << file;
    nlohmann::json d;
    ASSERT_NO_THROW(d = parse_yaml_lite(slurp(file)));
    auto kinds = deployed_kinds(name, source_dir() + "/deploy/kubernetes/config/" + name + ".yaml");
    ASSERT_FALSE(kinds.empty()) << "no kinds: neither registered by the plugin nor configured";
    EXPECT_EQ(check_deployment(d, kinds), "");
  }
}

TEST(Deploy, ValidatorCatchesBrokenDeployments) {
  auto d = parse_yaml_lite(slurp(source_dir() + "/deploy/kubernetes/domain_check.yaml"));
  ASSERT_EQ(check_deployment(d, {"domain_check"}), "");
  EXPECT_NE(check_deployment(d, {"scan"}), "");
  auto no_match = d;
  no_match["spec"]["selector"]["matchLabels"]["extra"] = "x";
  EXPECT_NE(check_deployment(no_match, {"domain_check"}), "");
  auto literal_db = d;
  literal_db["spec"]["template"]["spec"]["containers"][0]["env"][0] = {
      {"name", "DATABASE_URL"}, {"value", "postgresql://u:p@h/db"}};
  EXPECT_NE(check_deployment(literal_db, {"domain_check"}), "");
  auto bad_probe = d;
  bad_probe["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] =
      "metrics";
  EXPECT_NE(check_deployment(bad_probe, {"domain_check"}), "");
}

// Runs `systemd-analyze verify UNIT` in `dir`; returns exit code and everything it printed.
std::pair<int, std::string> verify(const fs::path& dir, const std::string& unit) {
  std::string cmd = "cd '" + dir.string() + "' && systemd-analyze verify ./" + unit + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (f && fgets(buf, sizeof buf, f)) out += buf;
  int st = f ? pclose(f) : -1;
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

TEST(Deploy, SystemdTemplateUnitVerifiesForEveryJobType) {
  ASSERT_EQ(std::system("command -v systemd-analyze >/dev/null"), 0)
      << "systemd-analyze is missing: scripts/install-deps.sh installs systemd";
  TempDir tmp;
  std::string unit = slurp(source_dir() + "/deploy/systemd/jobrunner@.service");
  // verify checks that ExecStart exists: point it at the runner we built.
  ASSERT_NE(unit.find("ExecStart=/usr/bin/runner worker"), std::string::npos);
  unit = std::regex_replace(unit, std::regex("/usr/bin/runner"), runner_path());
  std::ofstream(tmp.path() + "/jobrunner@.service") << unit;
  std::set<std::string> ports;
  for (const auto& name : shipped_plugins()) {
    SCOPED_TRACE(name);
    fs::path env = source_dir() + "/deploy/systemd/env/" + name + ".env";
    ASSERT_TRUE(fs::exists(env));
    std::string text = slurp(env);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(text, m, std::regex("\nRUNNER_KINDS=([a-z0-9_,]+)\n")));
    auto listed = jr::split_list(m[1].str());
    fs::path config;
    std::smatch c;
    if (std::regex_search(text, c, std::regex("\nRUNNER_CONFIG=/etc/jobrunner/([a-z0-9_.]+)\n"))) {
      config = source_dir() + "/deploy/systemd/config/" + c[1].str();
      EXPECT_TRUE(fs::exists(config))
          << "RUNNER_CONFIG names " << c[1] << ", not in deploy/systemd/config";
    }
    auto kinds = deployed_kinds(name, config);
    ASSERT_FALSE(kinds.empty()) << "no kinds: neither registered by the plugin nor configured";
    EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), kinds);
    ASSERT_TRUE(std::regex_search(text, m, std::regex("\nRUNNER_HTTP=127\\.0\\.0\\.1:([0-9]+)\n")));
    EXPECT_TRUE(ports.insert(m[1].str()).second) << "two job types share HTTP port " << m[1];
    fs::create_symlink("jobrunner@.service", tmp.path() + "/jobrunner@" + name + ".service");
    auto [rc, out] = verify(tmp.path(), "jobrunner@" + name + ".service");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out, "");
  }
  // The check is strict: a misspelt key is reported.
  std::ofstream(tmp.path() + "/broken@.service")
      << std::regex_replace(unit, std::regex("KillMode="), "KilMode=");
  fs::create_symlink("broken@.service", tmp.path() + "/broken@x.service");
  auto [rc, out] = verify(tmp.path(), "broken@x.service");
  EXPECT_NE(out.find("Unknown key"), std::string::npos) << out;
}

}  // namespace
}  // namespace jrtest
