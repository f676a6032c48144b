// Generators of realistic dataset files for the dataset_parse tests and benchmark. Header-only,
// deterministic (same arguments, same bytes), no shared state.
#pragma once

#include <cmath>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dptest {

// The i-th name of an endless list of unique, pronounceable, letters-only names ("Amari",
// "Belorin"...): i written in base 36 with one syllable per digit.
inline std::string name_for(uint64_t i) {
  static const char* const kSyl[36] = {"a",  "be", "ca", "da", "el", "fi", "ga", "ha",  "is",
                                       "jo", "ka", "li", "ma", "no", "ol", "pe", "qui", "ra",
                                       "sa", "ta", "ul", "va", "wi", "xa", "ya", "zo",  "ri",
                                       "ne", "mi", "lu", "ro", "an", "en", "on", "ar",  "ev"};
  std::string s;
  do {
    s += kSyl[i % 36];
    i /= 36;
  } while (i > 0);
  s += "n";  // "a" alone would be a one-letter name
  s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

// An SSA yobYYYY.txt body: `lines` lines "Name,Sex,Count", the F section first, then M, counts
// descending with a Zipf-like tail that flattens at 5 (the SSA minimum), as in the real files.
inline std::string make_ssa_yob(size_t lines) {
  std::string out;
  out.reserve(lines * 16);
  size_t female = lines / 2 + lines % 2;
  uint64_t next_name = 0;
  for (int s = 0; s < 2; ++s) {
    size_t n = s == 0 ? female : lines - female;
    for (size_t k = 1; k <= n; ++k) {
      int64_t count = static_cast<int64_t>(20000.0 / std::pow(static_cast<double>(k), 0.9));
      if (count < 5) count = 5;
      out += name_for(next_name++);
      out += s == 0 ? ",F," : ",M,";
      out += std::to_string(count);
      out += '\n';
    }
  }
  return out;
}

// An INSEE natYYYY.csv body: header, then `names` names x `years` years, plus the two kinds of
// lines the format uses for withheld data (_PRENOMS_RARES, year XXXX).
inline std::string make_insee_nat(size_t names, int first_year, int years) {
  std::string out = "sexe;preusuel;annais;nombre\n";
  for (size_t i = 0; i < names; ++i) {
    std::string n = name_for(i);
    for (char& c : n) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    if (i % 7 == 3) n += "\xC3\x89";  // a trailing 'É' now and then: UTF-8 must pass through
    for (int y = 0; y < years; ++y) {
      out += (i % 2 ? "1;" : "2;") + n + ";" + std::to_string(first_year + y) + ";" +
             std::to_string(3 + (i * 7 + y) % 500) + "\n";
    }
  }
  out += "1;_PRENOMS_RARES;1950;1234\n";
  out += "2;ZOE;XXXX;17\n";
  return out;
}

inline void write_file(const std::string& path, const std::string& body) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << body;
  if (!f) throw std::runtime_error("cannot write " + path);
}

}  // namespace dptest
