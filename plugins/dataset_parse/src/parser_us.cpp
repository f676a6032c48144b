// US: Social Security Administration national baby names, one file per year of birth,
// "yobYYYY.txt" (https://www.ssa.gov/oact/babynames/limits.html). No header; each line is
// "Name,Sex,Count" (Sex F or M), sorted by sex, then count descending, then name. The year comes
// from the file name. Rank: competition rank ("1224" ranking) by count within each sex, in file
// order (equal counts share a rank).
#include <climits>

#include "dataset_parse/src/parse_util.hpp"
#include "dataset_parse/src/parsers.hpp"

namespace dataset_parse {

namespace {

constexpr size_t kMaxNameBytes = 64;

class UsFile : public FileParser {
 public:
  explicit UsFile(int year) : year_(year) {}

  LineResult parse_line(std::string_view line, NameRow& row, std::string& reason) override {
    std::string_view f[3];
    size_t n = util::split(line, ',', f);
    if (n != 3) {
      reason = "expected 3 comma-separated fields (Name,Sex,Count), found " +
               (n > 3 ? std::string("more") : std::to_string(n));
      return LineResult::kReject;
    }
    std::string_view name = f[0];
    if (name.empty() || name.size() > kMaxNameBytes) {
      reason = "name must be 1 to 64 letters, got " + util::excerpt(name);
      return LineResult::kReject;
    }
    for (char c : name) {
      if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) {
        reason = "name must be ASCII letters only, got " + util::excerpt(name);
        return LineResult::kReject;
      }
    }
    if (f[1] != "F" && f[1] != "M") {
      reason = "sex must be F or M, got " + util::excerpt(f[1]);
      return LineResult::kReject;
    }
    int64_t count = 0;
    if (!util::parse_int(f[2], 1, INT32_MAX, &count)) {
      reason = "count must be a positive integer, got " + util::excerpt(f[2]);
      return LineResult::kReject;
    }
    Rank& r = f[1][0] == 'F' ? female_ : male_;
    ++r.position;
    if (count != r.last_count) {
      r.last_rank = r.position;
      r.last_count = count;
    }
    row.name = name;
    row.sex = f[1][0];
    row.count = static_cast<int32_t>(count);
    row.year = year_;
    row.rank = static_cast<int32_t>(r.last_rank);
    return LineResult::kRow;
  }

 private:
  struct Rank {
    int64_t position = 0;
    int64_t last_count = -1;
    int64_t last_rank = 0;
  };
  int year_;
  Rank female_, male_;
};

class UsParser : public Parser {
 public:
  std::string_view country() const override { return "US"; }
  std::string_view format() const override { return "us-ssa-yob"; }
  std::string_view filename_pattern() const override { return "yobYYYY.txt"; }

  std::unique_ptr<FileParser> begin(std::string_view file_name) const override {
    int year = util::year_in_name(file_name, "yob", ".txt");
    if (year < 1880 || year > 2100) {
      throw FormatError("invalid filename '" + std::string(file_name) +
                        "': the US parser reads SSA files named yobYYYY.txt (YYYY 1880-2100)");
    }
    return std::make_unique<UsFile>(year);
  }
};

}  // namespace

std::unique_ptr<Parser> make_us_ssa_parser() { return std::make_unique<UsParser>(); }

}  // namespace dataset_parse
