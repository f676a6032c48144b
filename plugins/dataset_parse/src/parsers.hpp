// File-format parsers for baby-name datasets, one per country, found through a Registry.
//
// A Parser is stateless and shared by every thread; Parser::begin() checks the file name and
// returns a FileParser that holds the per-file state (line position, rank counters) and belongs
// to the one thread parsing that file. Adding a country = one Parser subclass + one line in
// Registry::builtin().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace dataset_parse {

// The file name or the file layout is not what the country's parser reads. Never retryable.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One parsed line. `name` points into the line given to parse_line and is valid until the next
// call.
struct NameRow {
  std::string_view name;
  char sex = 0;       // 'F' or 'M'
  int32_t count = 0;  // > 0
  int32_t year = 0;
  int32_t rank = 0;  // 1-based; 0 = the format does not give one (stored as NULL)
};

enum class LineResult {
  kRow,     // `row` is filled in
  kHeader,  // a header line, accepted and not counted
  kSkip,    // a well-formed line that carries no name row (e.g. an aggregate); `reason` set
  kReject,  // malformed; `reason` set
};

class FileParser {
 public:
  virtual ~FileParser() = default;
  // `line` is one non-empty line without its terminator ("\n" or "\r\n"), UTF-8 BOM removed.
  // Throws FormatError when the file as a whole cannot be this format (e.g. a wrong header).
  virtual LineResult parse_line(std::string_view line, NameRow& row, std::string& reason) = 0;
};

class Parser {
 public:
  virtual ~Parser() = default;
  virtual std::string_view country() const = 0;           // ISO 3166-1 alpha-2, upper case
  virtual std::string_view format() const = 0;            // short id, e.g. "us-ssa-yob"
  virtual std::string_view filename_pattern() const = 0;  // for messages, e.g. "yobYYYY.txt"
  // Checks `file_name` (the base name of the storage path) against the parser's pattern and
  // returns the state for parsing that file. Throws FormatError("invalid filename ...").
  virtual std::unique_ptr<FileParser> begin(std::string_view file_name) const = 0;
};

class Registry {
 public:
  // Throws std::invalid_argument when the country already has a parser.
  void add(std::unique_ptr<Parser> parser);
  // Case-insensitive; nullptr when no parser serves the country.
  const Parser* find(std::string_view country_code) const;
  std::vector<std::string> countries() const;

  // US (SSA yobYYYY.txt) and FR (INSEE natYYYY.csv).
  static const Registry& builtin();

 private:
  std::map<std::string, std::unique_ptr<Parser>> parsers_;
};

std::unique_ptr<Parser> make_us_ssa_parser();
std::unique_ptr<Parser> make_fr_insee_parser();

}  // namespace dataset_parse
