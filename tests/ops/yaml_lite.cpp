#include "yaml_lite.hpp"

#include <regex>
#include <sstream>
#include <vector>

namespace jrtest {
namespace {

struct Line {
  int no;
  int indent;
  std::string text;  // without indentation and comment
};

[[noreturn]] void fail(int no, const std::string& what) {
  throw YamlError("line " + std::to_string(no) + ": " + what);
}

std::string strip_comment(const std::string& s, int no) {
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quote) {
      if (c == '\\' && quote == '"') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#' && (i == 0 || s[i - 1] == ' ')) {
      return s.substr(0, i);
    }
  }
  if (quote) fail(no, "unterminated quoted scalar");
  return s;
}

nlohmann::json scalar(std::string s, int no) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  if (s.empty()) fail(no, "empty value");
  if (s[0] == '"') {
    if (s.size() < 2 || s.back() != '"') fail(no, "bad double-quoted scalar");
    std::string out;
    for (size_t i = 1; i + 1 < s.size(); ++i) {
      if (s[i] == '\\') {
        char e = s[++i];
        if (e == 'n') {
          out += '\n';
        } else if (e == '"' || e == '\\') {
          out += e;
        } else {
          fail(no, "unsupported escape");
        }
      } else if (s[i] == '"') {
        fail(no, "stray quote");
      } else {
        out += s[i];
      }
    }
    return out;
  }
  if (s[0] == '\'') {
    if (s.size() < 2 || s.back() != '\'') fail(no, "bad single-quoted scalar");
    std::string out;
    for (size_t i = 1; i + 1 < s.size(); ++i) {
      if (s[i] == '\'') {
        if (s[i + 1] != '\'') fail(no, "stray quote");
        ++i;
      }
      out += s[i];
    }
    return out;
  }
  if (s[0] == '[') {
    if (s.back() != ']') fail(no, "unterminated flow sequence");
    nlohmann::json arr = nlohmann::json::array();
    std::string inner = s.substr(1, s.size() - 2);
    std::string item;
    char quote = 0;
    for (size_t i = 0; i <= inner.size(); ++i) {
      char c = i < inner.size() ? inner[i] : ',';
      if (quote) {
        item += c;
        if (c == '\\' && quote == '"' && i + 1 < inner.size()) {
          item += inner[++i];
        } else if (c == quote) {
          quote = 0;
        }
      } else if (c == '"' || c == '\'') {
        quote = c;
        item += c;
      } else if (c == ',') {
        size_t b = item.find_first_not_of(' ');
        if (b == std::string::npos) {
          if (i < inner.size() || !arr.empty()) fail(no, "empty item in flow sequence");
        } else {
          arr.push_back(scalar(item.substr(b), no));
        }
        item.clear();
      } else if (c == '[' || c == ']' || c == '{' || c == '}') {
        fail(no, "nested flow collections are not supported");
      } else {
        item += c;
      }
    }
    return arr;
  }
  static const std::regex bad_start(R"(^[&*!|>%@`{]|^- |^-$)");
  if (std::regex_search(s, bad_start)) fail(no, "unsupported YAML construct: " + s);
  if (s.find(": ") != std::string::npos) fail(no, "a plain scalar may not contain ': '");
  static const std::regex integer(R"(^-?[0-9]+$)");
  if (std::regex_match(s, integer)) return std::stoll(s);
  if (s == "true") return true;
  if (s == "false") return false;
  if (s == "null" || s == "~") return nullptr;
  return s;
}

class Parser {
 public:
  explicit Parser(std::vector<Line> lines) : lines_(std::move(lines)) {}
  nlohmann::json document() {
    if (lines_.empty()) throw YamlError("empty document");
    if (lines_[0].indent != 0) fail(lines_[0].no, "the document must start at column 1");
    nlohmann::json v = block(0);
    if (pos_ != lines_.size()) fail(lines_[pos_].no, "unexpected indentation");
    return v;
  }

 private:
  static bool is_item(const std::string& t) { return t == "-" || t.rfind("- ", 0) == 0; }

  nlohmann::json block(int indent) {
    return is_item(lines_[pos_].text) ? sequence(indent) : mapping(indent);
  }

  // Splits "key: value" / "key:"; returns false when the text is not a mapping entry.
  static bool split_entry(const std::string& t, std::string& key, std::string& value) {
    size_t colon = std::string::npos;
    if (!t.empty() && (t[0] == '"' || t[0] == '\'')) {
      size_t close = t.find(t[0], 1);
      if (close != std::string::npos && close + 1 < t.size() && t[close + 1] == ':')
        colon = close + 1;
    } else {
      for (size_t i = 0; i < t.size(); ++i) {
        if (t[i] == ':' && (i + 1 == t.size() || t[i + 1] == ' ')) {
          colon = i;
          break;
        }
      }
    }
    if (colon == std::string::npos || colon == 0) return false;
    key = t.substr(0, colon);
    value = colon + 1 < t.size() ? t.substr(colon + 2) : "";
    return true;
  }

  // The value after "key:": inline scalar, or a nested block on the following lines.
  nlohmann::json value_of(const std::string& inline_value, int indent, int no) {
    if (!inline_value.empty() && inline_value.find_first_not_of(' ') != std::string::npos) {
      return scalar(inline_value.substr(inline_value.find_first_not_of(' ')), no);
    }
    if (pos_ >= lines_.size() || lines_[pos_].indent <= indent) fail(no, "missing value");
    return block(lines_[pos_].indent);
  }

  nlohmann::json mapping(int indent) {
    nlohmann::json obj = nlohmann::json::object();
    while (pos_ < lines_.size() && lines_[pos_].indent == indent && !is_item(lines_[pos_].text)) {
      const Line& l = lines_[pos_++];
      std::string key, value;
      if (!split_entry(l.text, key, value)) fail(l.no, "expected 'key: value'");
      nlohmann::json k = scalar(key, l.no);
      std::string ks = k.is_string() ? k.get<std::string>() : k.dump();
      if (obj.contains(ks)) fail(l.no, "duplicate key '" + ks + "'");
      obj[ks] = value_of(value, indent, l.no);
    }
    if (pos_ < lines_.size() && lines_[pos_].indent > indent) {
      fail(lines_[pos_].no, "unexpected indentation");
    }
    return obj;
  }

  nlohmann::json sequence(int indent) {
    nlohmann::json arr = nlohmann::json::array();
    while (pos_ < lines_.size() && lines_[pos_].indent == indent && is_item(lines_[pos_].text)) {
      Line l = lines_[pos_];
      std::string rest = l.text == "-" ? "" : l.text.substr(2);
      std::string key, value;
      if (rest.empty()) {
        ++pos_;
        arr.push_back(value_of("", indent, l.no));
      } else if (split_entry(rest, key, value)) {
        // "- key: v" opens a mapping whose further keys sit at indent + 2.
        lines_[pos_].indent = indent + 2;
        lines_[pos_].text = rest;
        arr.push_back(mapping(indent + 2));
      } else {
        ++pos_;
        arr.push_back(scalar(rest, l.no));
      }
    }
    if (pos_ < lines_.size() && lines_[pos_].indent > indent) {
      fail(lines_[pos_].no, "unexpected indentation");
    }
    return arr;
  }

  std::vector<Line> lines_;
  size_t pos_ = 0;
};

}  // namespace

nlohmann::json parse_yaml_lite(const std::string& text) {
  std::vector<Line> lines;
  std::istringstream in(text);
  std::string raw;
  int no = 0;
  while (std::getline(in, raw)) {
    ++no;
    if (raw.find('\t') != std::string::npos) fail(no, "tab character");
    if (!raw.empty() && raw.back() == '\r') fail(no, "CR line ending");
    std::string s = strip_comment(raw, no);
    size_t first = s.find_first_not_of(' ');
    if (first == std::string::npos) continue;
    std::string t = s.substr(first);
    while (!t.empty() && t.back() == ' ') t.pop_back();
    if (t == "---") {
      if (!lines.empty()) fail(no, "only one document is supported");
      continue;
    }
    lines.push_back({no, static_cast<int>(first), t});
  }
  return Parser(std::move(lines)).document();
}

}  // namespace jrtest
