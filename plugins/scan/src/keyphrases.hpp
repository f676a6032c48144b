// ANALYZE step, keyphrases: RAKE (Rapid Automatic Keyword Extraction, Rose et al. 2010) over the
// page's visible text with an English stop-word list written here. No model or corpus is needed,
// which matters because nothing can be downloaded at run time. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace scan {

struct Keyphrase {
  std::string phrase;  // lower case, words joined by single spaces
  double score = 0;    // sum of member word scores deg(w) / freq(w)
  int count = 0;       // occurrences of the phrase in the text
};

// Candidate phrases are runs of words between stop words, punctuation and block boundaries
// (newlines), at most `max_words` long. Returns the best `limit` by score, then count, then text.
std::vector<Keyphrase> extract_keyphrases(std::string_view text, size_t limit = 10,
                                          size_t max_words = 4);

bool is_stop_word(std::string_view lower_word);

}  // namespace scan
