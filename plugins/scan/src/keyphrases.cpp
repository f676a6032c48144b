#include "scan/src/keyphrases.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace scan {

namespace {

// English function words: articles, pronouns, auxiliaries, prepositions, conjunctions, common
// adverbs and a few web boilerplate words. Written for this plugin.
const char* const kStopWords[] = {
    "a", "about", "above", "after", "again", "against", "all", "almost", "also", "although",
    "always", "am", "among", "an", "and", "another", "any", "anyone", "anything", "are", "around",
    "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by",
    "can", "cannot", "could", "did", "do", "does", "doing", "done", "down", "during", "each",
    "either", "else", "enough", "etc", "even", "ever", "every", "few", "for", "from", "further",
    "get", "gets", "got", "had", "has", "have", "having", "he", "her", "here", "hers", "herself",
    "him", "himself", "his", "how", "however", "i", "if", "in", "into", "is", "it", "its", "itself",
    "just", "least", "less", "let", "like", "made", "make", "many", "may", "me", "might", "more",
    "most", "much", "must", "my", "myself", "neither", "never", "no", "nor", "not", "now", "of",
    "off", "often", "on", "once", "one", "only", "or", "other", "others", "otherwise", "ought",
    "our", "ours", "ourselves", "out", "over", "own", "per", "perhaps", "quite", "rather", "really",
    "same", "see", "seem", "seems", "several", "shall", "she", "should", "since", "so", "some",
    "something", "still", "such", "than", "that", "the", "their", "theirs", "them", "themselves",
    "then", "there", "therefore", "these", "they", "this", "those", "though", "through", "thus",
    "to", "too", "toward", "towards", "under", "until", "up", "upon", "us", "use", "used", "using",
    "very", "via", "was", "we", "well", "were", "what", "whatever", "when", "where", "whether",
    "which", "while", "who", "whom", "whose", "why", "will", "with", "within", "without", "would",
    "yet", "you", "your", "yours", "yourself", "yourselves",
    // contractions (apostrophes are kept inside words)
    "aren't", "can't", "couldn't", "didn't", "doesn't", "don't", "hadn't", "hasn't", "haven't",
    "he's", "i'd", "i'll", "i'm", "i've", "isn't", "it's", "let's", "she's", "shouldn't", "that's",
    "there's", "they're", "we're", "we've", "wasn't", "weren't", "won't", "wouldn't", "you're",
    "you've",
    // web boilerplate
    "click", "here", "read", "more", "home", "menu", "skip", "content", "cookie", "cookies"};

const std::unordered_set<std::string_view>& stop_words() {
  static const std::unordered_set<std::string_view> set(std::begin(kStopWords),
                                                        std::end(kStopWords));
  return set;
}

bool word_char(unsigned char c) { return std::isalnum(c) || c >= 0x80 || c == '\'' || c == '-'; }

bool all_digits(const std::string& w) {
  return std::all_of(w.begin(), w.end(),
                     [](unsigned char c) { return std::isdigit(c) || c == '-' || c == '\''; });
}

}  // namespace

bool is_stop_word(std::string_view w) { return stop_words().count(w) > 0; }

std::vector<Keyphrase> extract_keyphrases(std::string_view text, size_t limit, size_t max_words) {
  // 1. Candidate phrases: split at delimiters (anything not a word char, except spaces), stop
  //    words, numbers and one-letter words.
  std::vector<std::vector<std::string>> phrases;
  std::vector<std::string> current;
  auto flush = [&] {
    if (!current.empty()) {
      // Over-long runs are split into max_words chunks rather than dropped.
      for (size_t i = 0; i < current.size(); i += max_words) {
        size_t end = std::min(current.size(), i + max_words);
        phrases.emplace_back(current.begin() + static_cast<long>(i),
                             current.begin() + static_cast<long>(end));
      }
      current.clear();
    }
  };
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == ' ' || c == '\t') {
      ++i;
      continue;
    }
    if (!word_char(c)) {
      flush();  // punctuation, newline (block boundary)...
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && word_char(static_cast<unsigned char>(text[j]))) ++j;
    std::string w(text.substr(i, j - i));
    i = j;
    // Trim apostrophes and hyphens at the edges ("'quoted'", "--").
    while (!w.empty() && (w.front() == '\'' || w.front() == '-')) w.erase(w.begin());
    while (!w.empty() && (w.back() == '\'' || w.back() == '-')) w.pop_back();
    std::transform(w.begin(), w.end(), w.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (w.size() < 2 || all_digits(w) || is_stop_word(w)) {
      flush();
      continue;
    }
    current.push_back(std::move(w));
  }
  flush();

  // 2. Word scores: degree (co-occurrences within phrases, itself included) over frequency.
  std::unordered_map<std::string, double> freq, degree;
  for (const auto& p : phrases) {
    for (const auto& w : p) {
      freq[w] += 1;
      degree[w] += static_cast<double>(p.size());
    }
  }
  // 3. Phrase score: sum of its word scores; identical phrases are merged and counted.
  std::map<std::string, Keyphrase> merged;
  for (const auto& p : phrases) {
    std::string key;
    double score = 0;
    for (const auto& w : p) {
      if (!key.empty()) key += ' ';
      key += w;
      score += degree[w] / freq[w];
    }
    Keyphrase& k = merged[key];
    k.phrase = key;
    k.score = score;
    ++k.count;
  }
  std::vector<Keyphrase> out;
  out.reserve(merged.size());
  for (auto& [key, k] : merged) out.push_back(std::move(k));
  std::sort(out.begin(), out.end(), [](const Keyphrase& a, const Keyphrase& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.count != b.count) return a.count > b.count;
    return a.phrase < b.phrase;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

}  // namespace scan
