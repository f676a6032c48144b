// FR: INSEE "Fichier des prénoms", national file "natYYYY.csv" (YYYY = the edition; the file
// covers every year of birth since 1900). UTF-8, ';'-separated, with the header
// "sexe;preusuel;annais;nombre": sexe 1 (M) or 2 (F), the first name as registered (upper case,
// accents kept), the year of birth, the number of births. Two kinds of line carry no name row
// and are counted as skipped, not rejected: the aggregate of rare names ("_PRENOMS_RARES") and
// counts whose year is withheld ("XXXX"). The file gives no rank (stored as NULL).
#include <cctype>
#include <climits>

#include "dataset_parse/src/parse_util.hpp"
#include "dataset_parse/src/parsers.hpp"

namespace dataset_parse {

namespace {

constexpr size_t kMaxNameBytes = 64;
constexpr std::string_view kHeader = "sexe;preusuel;annais;nombre";

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

class FrFile : public FileParser {
 public:
  explicit FrFile(int edition) : edition_(edition) {}

  LineResult parse_line(std::string_view line, NameRow& row, std::string& reason) override {
    if (!seen_header_) {
      seen_header_ = true;
      if (!iequals(line, kHeader)) {
        throw FormatError(
            "invalid file format: an INSEE natYYYY.csv file starts with the header '" +
            std::string(kHeader) + "', found " + util::excerpt(line, 60));
      }
      return LineResult::kHeader;
    }
    std::string_view f[4];
    size_t n = util::split(line, ';', f);
    if (n != 4) {
      reason = "expected 4 ';'-separated fields (sexe;preusuel;annais;nombre), found " +
               (n > 4 ? std::string("more") : std::to_string(n));
      return LineResult::kReject;
    }
    char sex = f[0] == "1" ? 'M' : f[0] == "2" ? 'F' : 0;
    if (sex == 0) {
      reason = "sexe must be 1 or 2, got " + util::excerpt(f[0]);
      return LineResult::kReject;
    }
    std::string_view name = f[1];
    if (name.empty() || name.size() > kMaxNameBytes || !util::printable_utf8(name)) {
      reason = "preusuel must be 1 to 64 bytes of printable UTF-8, got " + util::excerpt(name);
      return LineResult::kReject;
    }
    int64_t count = 0;
    if (!util::parse_int(f[3], 1, INT32_MAX, &count)) {
      reason = "nombre must be a positive integer, got " + util::excerpt(f[3]);
      return LineResult::kReject;
    }
    if (f[2] == "XXXX") {
      reason = "year withheld (XXXX)";
      return LineResult::kSkip;
    }
    int64_t year = 0;
    if (!util::parse_int(f[2], 1800, edition_, &year)) {
      reason = "annais must be a year from 1800 to " + std::to_string(edition_) + ", got " +
               util::excerpt(f[2]);
      return LineResult::kReject;
    }
    if (name == "_PRENOMS_RARES") {
      reason = "rare names aggregate (_PRENOMS_RARES)";
      return LineResult::kSkip;
    }
    row.name = name;
    row.sex = sex;
    row.count = static_cast<int32_t>(count);
    row.year = static_cast<int32_t>(year);
    row.rank = 0;
    return LineResult::kRow;
  }

 private:
  int edition_;
  bool seen_header_ = false;
};

class FrParser : public Parser {
 public:
  std::string_view country() const override { return "FR"; }
  std::string_view format() const override { return "fr-insee-nat"; }
  std::string_view filename_pattern() const override { return "natYYYY.csv"; }

  std::unique_ptr<FileParser> begin(std::string_view file_name) const override {
    int edition = util::year_in_name(file_name, "nat", ".csv");
    if (edition < 1900 || edition > 2100) {
      throw FormatError("invalid filename '" + std::string(file_name) +
                        "': the FR parser reads INSEE files named natYYYY.csv (YYYY 1900-2100)");
    }
    return std::make_unique<FrFile>(edition);
  }
};

}  // namespace

std::unique_ptr<Parser> make_fr_insee_parser() { return std::make_unique<FrParser>(); }

}  // namespace dataset_parse
