#include "prom_parse.hpp"

#include <cmath>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

namespace jrtest {
namespace {

bool valid_metric_name(const std::string& s) {
  static const std::regex re("[a-zA-Z_:][a-zA-Z0-9_:]*");
  return std::regex_match(s, re);
}
bool valid_label_name(const std::string& s) {
  static const std::regex re("[a-zA-Z_][a-zA-Z0-9_]*");
  return std::regex_match(s, re);
}

double parse_value(const std::string& v, const std::string& where) {
  if (v == "+Inf") return INFINITY;
  if (v == "-Inf") return -INFINITY;
  if (v == "NaN") return NAN;
  size_t pos = 0;
  double d = 0;
  try {
    d = std::stod(v, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (v.empty() || pos != v.size()) throw PromParseError(where + ": bad value '" + v + "'");
  return d;
}

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

Sample parse_sample(const std::string& line, const std::string& where) {
  Sample s;
  size_t i = 0;
  while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
  s.name = line.substr(0, i);
  if (!valid_metric_name(s.name)) throw PromParseError(where + ": bad metric name");
  if (i < line.size() && line[i] == '{') {
    ++i;
    for (;;) {
      if (i < line.size() && line[i] == '}') {
        ++i;
        break;
      }
      size_t eq = line.find('=', i);
      if (eq == std::string::npos) throw PromParseError(where + ": label without '='");
      std::string lname = line.substr(i, eq - i);
      if (!valid_label_name(lname)) throw PromParseError(where + ": bad label name " + lname);
      i = eq + 1;
      if (i >= line.size() || line[i] != '"') throw PromParseError(where + ": unquoted label");
      ++i;
      std::string val;
      for (;;) {
        if (i >= line.size()) throw PromParseError(where + ": unterminated label value");
        char c = line[i++];
        if (c == '"') break;
        if (c == '\\') {
          if (i >= line.size()) throw PromParseError(where + ": dangling escape");
          char e = line[i++];
          if (e == 'n') {
            val += '\n';
          } else if (e == '\\' || e == '"') {
            val += e;
          } else {
            throw PromParseError(where + ": bad escape \\" + std::string(1, e));
          }
        } else if (c == '\n') {
          throw PromParseError(where + ": raw newline in label value");
        } else {
          val += c;
        }
      }
      if (s.labels.count(lname)) throw PromParseError(where + ": duplicate label " + lname);
      s.labels[lname] = val;
      if (i < line.size() && line[i] == ',') {
        ++i;
      } else if (i < line.size() && line[i] == '}') {
        ++i;
        break;
      } else {
        throw PromParseError(where + ": expected ',' or '}' after a label");
      }
    }
  }
  if (i >= line.size() || line[i] != ' ') throw PromParseError(where + ": expected ' value'");
  std::string rest = line.substr(i + 1);
  std::istringstream in(rest);
  std::string value, ts, extra;
  in >> value >> ts >> extra;
  if (!extra.empty()) throw PromParseError(where + ": trailing text");
  if (rest.empty() || rest[0] == ' ') throw PromParseError(where + ": extra spaces");
  s.value = parse_value(value, where);
  if (!ts.empty()) parse_value(ts, where);
  return s;
}

std::string key_of(const std::string& name, const std::map<std::string, std::string>& labels) {
  std::string k = name;
  if (labels.empty()) return k;
  k += '{';
  bool first = true;
  for (const auto& [n, v] : labels) {
    if (!first) k += ',';
    first = false;
    k += n + "=\"" + v + "\"";
  }
  return k + '}';
}

}  // namespace

std::map<std::string, double> parse_prometheus(const std::string& text) {
  std::map<std::string, double> out;
  std::map<std::string, std::string> types;  // family -> type
  std::set<std::string> helped, sampled_families;
  // histogram family + labels without le -> [(le, value)], and _count values
  std::map<std::string, std::vector<std::pair<double, double>>> buckets;
  std::map<std::string, double> counts;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  if (!text.empty() && text.back() != '\n') throw PromParseError("output must end with a newline");
  while (std::getline(in, line)) {
    std::string where = "line " + std::to_string(++n) + " '" + line + "'";
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream c(line.substr(1));
      std::string kw, name, rest;
      c >> kw >> name;
      if (kw == "HELP" || kw == "TYPE") {
        if (!valid_metric_name(name)) throw PromParseError(where + ": bad name");
        if (sampled_families.count(name)) {
          throw PromParseError(where + ": " + kw + " after samples of the family");
        }
        if (kw == "HELP") {
          if (!helped.insert(name).second) throw PromParseError(where + ": HELP twice");
        } else {
          c >> rest;
          static const std::set<std::string> ok = {"counter", "gauge", "histogram", "summary",
                                                   "untyped"};
          if (!ok.count(rest)) throw PromParseError(where + ": bad type");
          if (types.count(name)) throw PromParseError(where + ": TYPE twice");
          types[name] = rest;
        }
      }
      continue;
    }
    Sample s = parse_sample(line, where);
    std::string family = s.name;
    std::string suffix;
    for (const char* suf : {"_bucket", "_sum", "_count"}) {
      std::string sf(suf);
      if (s.name.size() > sf.size() &&
          s.name.compare(s.name.size() - sf.size(), sf.size(), sf) == 0) {
        std::string base = s.name.substr(0, s.name.size() - sf.size());
        if (types.count(base) && (types[base] == "histogram" || types[base] == "summary")) {
          family = base;
          suffix = sf;
        }
      }
    }
    if (!types.count(family)) throw PromParseError(where + ": sample before its # TYPE");
    const std::string& type = types[family];
    if (type == "histogram" && suffix.empty()) {
      throw PromParseError(where + ": histogram sample without _bucket/_sum/_count");
    }
    if (type == "counter" && (s.value < 0 || std::isnan(s.value))) {
      throw PromParseError(where + ": negative counter");
    }
    sampled_families.insert(family);
    std::string key = key_of(s.name, s.labels);
    if (out.count(key)) throw PromParseError(where + ": duplicate series");
    out[key] = s.value;
    if (type == "histogram") {
      auto labels = s.labels;
      if (suffix == "_bucket") {
        if (!labels.count("le")) throw PromParseError(where + ": bucket without le");
        double le = parse_value(labels["le"], where);
        labels.erase("le");
        buckets[key_of(family, labels)].emplace_back(le, s.value);
      } else if (suffix == "_count") {
        counts[key_of(family, labels)] = s.value;
      }
    }
  }
  for (const auto& [series, bs] : buckets) {
    for (size_t i = 1; i < bs.size(); ++i) {
      if (!(bs[i].first > bs[i - 1].first)) throw PromParseError(series + ": le not ascending");
      if (bs[i].second < bs[i - 1].second) throw PromParseError(series + ": not cumulative");
    }
    if (bs.empty() || !std::isinf(bs.back().first)) throw PromParseError(series + ": no +Inf");
    if (!counts.count(series) || counts[series] != bs.back().second) {
      throw PromParseError(series + ": +Inf bucket differs from _count");
    }
  }
  return out;
}

double prom_value(const std::map<std::string, double>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

}  // namespace jrtest
