// jr_sqlgen: turns the store's named SQL statements (host/store/sql/*.sql) into a C++ header,
// at build time. Usage: jr_sqlgen OUT.hpp FILE.sql...
//
// A file is a list of blocks, each opened by a directive line:
//   -- name: job_insert            a statement, sent with its parameters (exec_params)
//   -- name: job_claim :prepared   a statement prepared once per connection (the hot path)
//   -- fragment: done_cols         text that statements include as {{done_cols}}
// A fragment may take arguments: {{claim FAST=true}} puts "true" for every @FAST@ in it, and
// {{row WHY='a text'}} the SQL literal 'a text' (quotes included) for every @WHY@.
// Full-line comments document the SQL and are not sent; a trailing ';' is dropped. Lines before
// the first directive may only be comments (the file's header).
//
// The header has one `inline constexpr Statement NAME{...}` per statement (a misspelt name is a
// compile error, not a runtime one), `kAll` listing every statement (the PostgreSQL suite
// prepares each one against the migrated schema), and the fragments as text in `fragment::`.
// Any mistake stops the build with FILE:LINE and what is wrong.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Block {
  std::string name;
  bool fragment = false;
  bool prepared = false;
  std::string where;  // FILE:LINE of the directive
  std::string text;
};

struct Failure {
  std::string message;
};

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Failure{where + ": " + what};
}

bool is_comment_or_blank(const std::string& line) {
  size_t i = line.find_first_not_of(" \t\r");
  return i == std::string::npos || line.compare(i, 2, "--") == 0;
}

std::string trim_end(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t' ||
                        s.back() == '\r' || s.back() == ';')) {
    s.pop_back();
  }
  return s;
}

std::vector<Block> parse(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, "cannot read");
  static const std::regex directive(
      R"(^-- (name|fragment): ([a-z][a-z0-9_]*)( :prepared)?[ \t\r]*$)");
  std::vector<Block> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    std::string where = path + ":" + std::to_string(n);
    std::smatch m;
    if (line.rfind("-- name:", 0) == 0 || line.rfind("-- fragment:", 0) == 0) {
      if (!std::regex_match(line, m, directive)) {
        fail(where,
             "a directive is '-- name: NAME', '-- name: NAME :prepared' or '-- fragment: NAME' "
             "(NAME: a lower-case letter, then lower-case letters, digits and _)");
      }
      Block b;
      b.fragment = m[1] == "fragment";
      b.name = m[2];
      b.prepared = m[3].matched;
      if (b.fragment && b.prepared) fail(where, "a fragment cannot be :prepared");
      b.where = where;
      out.push_back(std::move(b));
      continue;
    }
    if (is_comment_or_blank(line)) {
      if (!out.empty() && line.find_first_not_of(" \t\r") == std::string::npos &&
          !out.back().text.empty()) {
        out.back().text += "\n";
      }
      continue;
    }
    if (out.empty()) fail(where, "SQL before the first '-- name:' or '-- fragment:'");
    if (line.find(")JRSQL\"") != std::string::npos) fail(where, "contains )JRSQL\"");
    out.back().text += line + "\n";
  }
  for (auto& b : out) {
    b.text = trim_end(b.text);
    if (b.text.empty())
      fail(b.where, (b.fragment ? "fragment " : "statement ") + b.name + " is empty");
  }
  return out;
}

// Expands {{fragment ARGS}} in `text` (depth-limited, so a fragment including itself stops).
std::string expand(const std::string& text, const std::string& where,
                   const std::map<std::string, const Block*>& fragments, int depth) {
  if (depth > 8) fail(where, "fragments nested more than 8 deep (one includes itself?)");
  static const std::regex include(
      R"(\{\{([a-z][a-z0-9_]*)((?: +[A-Z][A-Z0-9_]*=(?:'[^']*'|[^ }']+))*) *\}\})");
  static const std::regex arg(R"(([A-Z][A-Z0-9_]*)=('[^']*'|[^ }']+))");
  std::string out;
  auto begin = std::sregex_iterator(text.begin(), text.end(), include);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    out += text.substr(last, static_cast<size_t>(m.position()) - last);
    last = static_cast<size_t>(m.position() + m.length());
    auto f = fragments.find(m[1]);
    if (f == fragments.end()) fail(where, "{{" + m[1].str() + "}}: no such fragment");
    std::string body = expand(f->second->text, f->second->where, fragments, depth + 1);
    std::string args = m[2];
    for (auto a = std::sregex_iterator(args.begin(), args.end(), arg); a != std::sregex_iterator();
         ++a) {
      std::string key = "@" + (*a)[1].str() + "@";
      if (body.find(key) == std::string::npos) {
        fail(where, "{{" + m[1].str() + "}}: the fragment has no " + key);
      }
      for (size_t at; (at = body.find(key)) != std::string::npos;)
        body.replace(at, key.size(), (*a)[2]);
    }
    out += body;
  }
  out += text.substr(last);
  if (out.find("{{") != std::string::npos) fail(where, "a '{{' that is not {{fragment ARGS}}");
  return out;
}

void check_complete(const std::string& text, const std::string& where) {
  static const std::regex placeholder(R"(@[A-Z][A-Z0-9_]*@)");
  std::smatch m;
  if (std::regex_search(text, m, placeholder)) {
    fail(where, m.str() + " is not given (include the fragment as {{NAME " +
                    m.str().substr(1, m.str().size() - 2) + "=...}})");
  }
}

std::string literal(const std::string& text) { return "R\"JRSQL(" + text + ")JRSQL\""; }

int generate(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: jr_sqlgen OUT.hpp FILE.sql...\n";
    return 2;
  }
  try {
    std::vector<Block> blocks;
    for (int i = 2; i < argc; ++i) {
      for (auto& b : parse(argv[i])) blocks.push_back(std::move(b));
    }
    std::map<std::string, const Block*> by_name, fragments;
    for (const auto& b : blocks) {
      auto [it, fresh] = by_name.emplace(b.name, &b);
      if (!fresh) fail(b.where, b.name + " is already defined at " + it->second->where);
      if (b.fragment) fragments.emplace(b.name, &b);
    }
    std::ostringstream out;
    out << "// Generated by jr_sqlgen (host/store/sql/sqlgen.cpp) from host/store/sql/*.sql. Do "
           "not edit.\n#pragma once\n\n#include \"pg_statement.hpp\"\n\nnamespace jr::sql {\n\n";
    std::vector<std::string> names;
    for (const auto& b : blocks) {
      if (b.fragment) continue;
      std::string text = expand(b.text, b.where, fragments, 0);
      check_complete(text, b.where);
      std::string file = b.where.substr(b.where.rfind('/') + 1);
      out << "// " << file << "\ninline constexpr Statement " << b.name << "{\"" << b.name << "\", "
          << literal(text) << ", " << (b.prepared ? "true" : "false") << "};\n";
      names.push_back(b.name);
    }
    out << "\ninline constexpr const Statement* kAll[] = {\n";
    for (const auto& n : names) out << "    &" << n << ",\n";
    out << "};\n\nnamespace fragment {\n";
    for (const auto& b : blocks) {
      if (!b.fragment) continue;
      std::string text = expand(b.text, b.where, fragments, 0);
      out << "inline constexpr const char " << b.name << "[] = " << literal(text) << ";\n";
    }
    out << "}  // namespace fragment\n\n}  // namespace jr::sql\n";
    // Written only when it changed, so an edit to a comment recompiles nothing.
    std::string text = out.str();
    {
      std::ifstream old(argv[1]);
      std::stringstream have;
      have << old.rdbuf();
      if (old && have.str() == text) return 0;
    }
    std::ofstream f(argv[1], std::ios::trunc);
    f << text;
    if (!f) throw Failure{std::string(argv[1]) + ": cannot write"};
  } catch (const Failure& e) {
    std::cerr << e.message << "\n";
    return 1;
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    return generate(argc, argv);
  } catch (const std::exception& e) {  // out of memory, a regex error: still a clear failure
    std::cerr << "jr_sqlgen: " << e.what() << "\n";
    return 1;
  }
}
