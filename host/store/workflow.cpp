#include "workflow.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "job_options.hpp"

namespace jr::ops {
namespace {

using nlohmann::json;

[[noreturn]] void refuse(const std::string& why) { throw WorkflowError(why); }

// PostgreSQL's jsonb_typeof() names, so the messages match jr_workflow_check()'s.
std::string jsonb_type(const json& v) {
  if (v.is_object()) return "object";
  if (v.is_array()) return "array";
  if (v.is_string()) return "string";
  if (v.is_number()) return "number";
  if (v.is_boolean()) return "boolean";
  return "null";
}

// [A-Za-z0-9_.:-]{1,128}, the rule of kinds and step names.
bool is_name(const json& v) {
  if (!v.is_string()) return false;
  const auto& s = v.get_ref<const std::string&>();
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
  });
}

// The first key of `o` (in byte order, as COLLATE "C") that is not in `known`, or "".
std::string first_unknown(const json& o, const std::set<std::string>& known) {
  for (const auto& [k, v] : o.items()) {
    if (!known.count(k)) return k.substr(0, 140);
  }
  return "";
}

// Options that can return an existing job instead of a new one (jr_enqueue_per_job_option_keys).
const std::set<std::string>& per_job_option_keys() {
  static const std::set<std::string> keys = {
      "unique",  "unique_key",       "unique_for_seconds",  "unique_states",
      "replace", "debounce_seconds", "debounce_max_seconds"};
  return keys;
}

}  // namespace

WorkflowSummary check_workflow(const json& doc) {
  if (!doc.is_object()) {
    refuse("the workflow document must be a JSON object, got " + jsonb_type(doc));
  }
  if (std::string k = first_unknown(doc, {"name", "steps"}); !k.empty()) {
    refuse("unknown key '" + k + "' in the workflow document (known: name, steps)");
  }
  if (doc.contains("name")) {
    const json& n = doc["name"];
    bool ok = n.is_string() && !n.get_ref<const std::string&>().empty() &&
              n.get_ref<const std::string&>().size() <= 1024;
    if (ok) {
      for (unsigned char c : n.get_ref<const std::string&>()) {
        if (c < 0x20 || c == 0x7f) ok = false;
      }
    }
    if (!ok) refuse("'name' must be a string of 1 to 1024 bytes without control characters");
  }
  if (!doc.contains("steps") || !doc["steps"].is_array()) {
    refuse("'steps' must be an array of steps, got " +
           (doc.contains("steps") ? jsonb_type(doc["steps"]) : std::string("nothing")));
  }
  const json& steps = doc["steps"];
  const size_t n = steps.size();
  if (n == 0) refuse("the workflow has no steps");
  if (n > kMaxWorkflowSteps) {
    refuse("the workflow has " + std::to_string(n) + " steps, more than " +
           std::to_string(kMaxWorkflowSteps));
  }
  // Each step on its own, in document order.
  std::vector<std::string> names;
  names.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const json& s = steps[i];
    const std::string at = "steps[" + std::to_string(i) + "]";
    if (!s.is_object()) refuse(at + " must be a JSON object, got " + jsonb_type(s));
    if (std::string k = first_unknown(s, {"name", "kind", "payload", "options", "depends_on"});
        !k.empty()) {
      refuse(at + " has an unknown key '" + k +
             "' (known: name, kind, payload, options, depends_on)");
    }
    if (!s.contains("name") || !is_name(s["name"])) {
      refuse(at + " needs a 'name' of 1 to 128 characters of A-Z a-z 0-9 _ . : -");
    }
    const std::string label = "step '" + s["name"].get<std::string>() + "': ";
    if (!s.contains("kind") || !is_name(s["kind"])) {
      refuse(label + "'kind' must be 1 to 128 characters of A-Z a-z 0-9 _ . : -");
    }
    if (s.contains("payload") && !s["payload"].is_object()) {
      refuse(label + "'payload' must be a JSON object, got " + jsonb_type(s["payload"]));
    }
    if (s.contains("options")) {
      const json& o = s["options"];
      if (!o.is_object()) refuse(label + "'options' must be a JSON object, got " + jsonb_type(o));
      if (o.contains("depends_on")) {
        refuse(label +
               "option 'depends_on' is not allowed in a step's options (name the steps it "
               "depends on in the step's 'depends_on')");
      }
      for (const auto& [k, v] : o.items()) {
        if (per_job_option_keys().count(k)) {
          refuse(label + "option '" + k +
                 "' cannot be used in a workflow step (each step must be a new job)");
        }
      }
    }
    if (s.contains("depends_on")) {
      const json& d = s["depends_on"];
      if (!d.is_array()) {
        refuse(label + "'depends_on' must be an array of step names, got " + jsonb_type(d));
      }
      for (const auto& e : d) {
        if (!e.is_string()) {
          refuse(label + "'depends_on' must hold step names (strings), got " + jsonb_type(e));
        }
      }
    }
    names.push_back(s["name"].get<std::string>());
  }
  // Names: each once.
  std::map<std::string, size_t> pos;
  for (size_t i = 0; i < n; ++i) {
    auto [it, fresh] = pos.emplace(names[i], i);
    if (!fresh) {
      refuse("step name '" + names[i] + "' is used twice (steps[" + std::to_string(it->second) +
             "] and steps[" + std::to_string(i) + "])");
    }
  }
  // Every dependency names a step; edges parent -> child, without repeats.
  std::vector<std::vector<size_t>> parents(n), children(n);
  WorkflowSummary out;
  out.steps = n;
  for (size_t i = 0; i < n; ++i) {
    if (!steps[i].contains("depends_on")) continue;
    for (const auto& e : steps[i]["depends_on"]) {
      const auto& dep = e.get_ref<const std::string&>();
      auto it = pos.find(dep);
      if (it == pos.end()) {
        refuse("step '" + names[i] + "' depends on '" + dep.substr(0, 140) +
               "', which is not a step of this workflow");
      }
      parents[i].push_back(it->second);
    }
    std::sort(parents[i].begin(), parents[i].end());
    parents[i].erase(std::unique(parents[i].begin(), parents[i].end()), parents[i].end());
    for (size_t p : parents[i]) children[p].push_back(i);
    out.edges += parents[i].size();
  }
  // No cycle (Kahn's algorithm); then name one as jr_workflow_check() does: from the first step
  // left over, follow its first dependency left over until a step comes round again.
  std::vector<size_t> indeg(n), queue;
  for (size_t i = 0; i < n; ++i) {
    indeg[i] = parents[i].size();
    if (indeg[i] == 0) queue.push_back(i);
  }
  for (size_t head = 0; head < queue.size(); ++head) {
    for (size_t c : children[queue[head]]) {
      if (--indeg[c] == 0) queue.push_back(c);
    }
  }
  if (queue.size() < n) {
    size_t cur = 0;
    while (indeg[cur] == 0) ++cur;
    std::vector<size_t> path = {cur};
    for (;;) {
      size_t next = n;
      for (size_t p : parents[cur]) {
        if (indeg[p] > 0) {
          next = p;
          break;
        }
      }
      auto seen = std::find(path.begin(), path.end(), next);
      if (seen != path.end()) {
        std::string text;
        for (auto it = seen; it != path.end(); ++it) text += names[*it] + " -> ";
        refuse("dependency cycle: " + text + names[next] + " (each step depends on the next)");
      }
      path.push_back(next);
      cur = next;
    }
  }
  // Every step's job options, by the one parser (as jr_enqueue_ex() in SQL).
  for (size_t i = 0; i < n; ++i) {
    const json& s = steps[i];
    try {
      job_from_parts(s["kind"].get<std::string>(),
                     s.contains("payload") ? s["payload"] : json::object(),
                     s.contains("options") ? s["options"] : json::object());
    } catch (const JobOptionError& e) {
      refuse("step '" + names[i] + "': " + e.what());
    }
  }
  return out;
}

}  // namespace jr::ops
