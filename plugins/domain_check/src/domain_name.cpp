#include "domain_check/src/domain_name.hpp"

#include <cstdint>
#include <cstdio>
#include <vector>

namespace domain_check {
namespace {

bool is_ldh(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

std::string printable(unsigned char c) {
  if (c >= 0x21 && c < 0x7f) return std::string("'") + static_cast<char>(c) + "'";
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", c);
  return buf;
}

NameCheck invalid(std::string reason) { return NameCheck{false, "", std::move(reason)}; }

// Checks one label; returns "" when fine, else the reason.
std::string check_label(std::string_view label) {
  if (label.empty()) return "has an empty label";
  if (label.size() > 63) {
    return "has a label longer than 63 characters (" + std::to_string(label.size()) + ")";
  }
  for (char c : label) {
    if (!is_ldh(c)) {
      return "has an invalid character " + printable(static_cast<unsigned char>(c)) +
             " (only letters, digits and hyphens)";
    }
  }
  if (label.front() == '-' || label.back() == '-') {
    return "has a label that starts or ends with a hyphen";
  }
  if (label.size() >= 4 && label[2] == '-' && label[3] == '-') {
    if (label.substr(0, 4) != "xn--") {
      return "has a label with \"--\" in positions 3-4 that is not a punycode (xn--) label";
    }
    std::u32string decoded;
    if (label.size() == 4 || !punycode_decode(label.substr(4), decoded)) {
      return "has a malformed punycode label '" + std::string(label) + "'";
    }
    bool any_non_ascii = false;
    for (char32_t cp : decoded) any_non_ascii = any_non_ascii || cp >= 0x80;
    if (!any_non_ascii) {
      return "has a punycode label '" + std::string(label) + "' that encodes only ASCII";
    }
  }
  return "";
}

}  // namespace

bool punycode_decode(std::string_view input, std::u32string& out) {
  // RFC 3492 section 6.2, with the bootstring parameters of section 5.
  constexpr uint32_t base = 36, tmin = 1, tmax = 26, skew = 38, damp = 700;
  constexpr uint32_t initial_bias = 72, initial_n = 128;
  out.clear();
  size_t b = input.rfind('-');
  size_t start = 0;
  if (b != std::string_view::npos) {
    for (size_t j = 0; j < b; ++j) {
      if (static_cast<unsigned char>(input[j]) >= 0x80) return false;
      out.push_back(static_cast<unsigned char>(input[j]));
    }
    start = b + 1;
  }
  auto digit = [](char c) -> int {
    if (c >= 'a' && c <= 'z') return c - 'a';
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= '0' && c <= '9') return c - '0' + 26;
    return -1;
  };
  auto adapt = [&](uint64_t delta, uint64_t numpoints, bool first) {
    delta = first ? delta / damp : delta / 2;
    delta += delta / numpoints;
    uint32_t k = 0;
    while (delta > ((base - tmin) * tmax) / 2) {
      delta /= base - tmin;
      k += base;
    }
    return static_cast<uint32_t>(k + (base - tmin + 1) * delta / (delta + skew));
  };
  uint64_t n = initial_n, i = 0;
  uint32_t bias = initial_bias;
  size_t in = start;
  while (in < input.size()) {
    uint64_t oldi = i, w = 1;
    for (uint32_t k = base;; k += base) {
      if (in >= input.size()) return false;
      int d = digit(input[in++]);
      if (d < 0) return false;
      i += static_cast<uint64_t>(d) * w;
      if (i > 0x10FFFF * 64ull) return false;  // overflow guard
      uint32_t t = k <= bias ? tmin : (k >= bias + tmax ? tmax : k - bias);
      if (static_cast<uint32_t>(d) < t) break;
      w *= base - t;
      if (w > 0xFFFFFFFFull) return false;
    }
    uint64_t len = out.size() + 1;
    bias = adapt(i - oldi, len, oldi == 0);
    n += i / len;
    i %= len;
    if (n > 0x10FFFF || (n >= 0xD800 && n <= 0xDFFF)) return false;
    out.insert(out.begin() + static_cast<std::ptrdiff_t>(i), static_cast<char32_t>(n));
    ++i;
  }
  return true;
}

NameCheck check_domain_name(std::string_view raw) {
  if (raw.empty()) return invalid("is empty");
  if (raw.size() > 1024) return invalid("is far too long (" + std::to_string(raw.size()) + ")");
  std::string name(raw);
  for (unsigned char c : name) {
    if (c >= 0x80) {
      return invalid(
          "contains non-ASCII characters: give internationalised names in their "
          "punycode (xn--) form");
    }
  }
  for (char& c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (name.back() == '.') name.pop_back();
  if (name.empty()) return invalid("is only the root");
  if (name.size() > 253) {
    return invalid("is longer than 253 characters (" + std::to_string(name.size()) + ")");
  }
  std::vector<std::string_view> labels;
  std::string_view rest(name);
  for (;;) {
    size_t dot = rest.find('.');
    labels.push_back(rest.substr(0, dot));
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  for (auto label : labels) {
    std::string why = check_label(label);
    if (!why.empty()) return invalid(why);
  }
  if (labels.size() < 2) return invalid("has a single label: give a domain under a TLD");
  bool numeric_tld = true;
  for (char c : labels.back()) numeric_tld = numeric_tld && c >= '0' && c <= '9';
  if (numeric_tld) return invalid("has an all-numeric top-level label (an IP address?)");
  return NameCheck{true, name, ""};
}

}  // namespace domain_check
