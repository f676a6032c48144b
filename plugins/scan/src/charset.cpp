#include "scan/src/charset.hpp"

#include <iconv.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <optional>
#include <set>

namespace scan {

namespace {

constexpr size_t kPrescanBytes = 1024;  // HTML5: the <meta> prescan looks this far
constexpr const char* kReplacement = "\xEF\xBF\xBD";

bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && space(s[b])) ++b;
  while (e > b && space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// One attribute of a tag, the tag's end, or the input's end (HTML5 "get an attribute").
struct Attr {
  std::string name, value;
};
std::optional<Attr> next_attribute(std::string_view h, size_t& i) {
  while (i < h.size() && (space(h[i]) || h[i] == '/')) ++i;
  if (i >= h.size()) return std::nullopt;
  if (h[i] == '>') {
    ++i;
    return std::nullopt;
  }
  Attr a;
  while (i < h.size() && !space(h[i]) && h[i] != '/' && h[i] != '>' &&
         (h[i] != '=' || a.name.empty())) {
    a.name.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(h[i]))));
    ++i;
  }
  while (i < h.size() && space(h[i])) ++i;
  if (i >= h.size() || h[i] != '=') return a;
  ++i;
  while (i < h.size() && space(h[i])) ++i;
  if (i < h.size() && (h[i] == '"' || h[i] == '\'')) {
    char quote = h[i++];
    size_t end = h.find(quote, i);
    if (end == std::string_view::npos) end = h.size();
    a.value = std::string(h.substr(i, end - i));
    i = std::min(h.size(), end + 1);
  } else {
    while (i < h.size() && !space(h[i]) && h[i] != '>') a.value.push_back(h[i++]);
  }
  return a;
}

// What iconv should be asked for, given a declared label (lower case, trimmed); "" when the
// label is not one an encoding can have.
std::string iconv_name(const std::string& label, bool from_meta) {
  if (label.empty() || label.size() > 40) return "";
  for (char c : label) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
        c != ':') {
      return "";  // never hand iconv_open a "//TRANSLIT" suffix or a path
    }
  }
  static const std::set<std::string> kUtf8 = {"utf-8",         "utf8",          "unicode-1-1-utf-8",
                                              "unicode11utf8", "unicode20utf8", "x-unicode20utf8"};
  // WHATWG Encoding: all of these mean windows-1252 on the web.
  static const std::set<std::string> kWindows1252 = {
      "ansi_x3.4-1968", "ascii",           "cp1252",     "cp819",     "csisolatin1",
      "ibm819",         "iso-8859-1",      "iso-ir-100", "iso8859-1", "iso88591",
      "iso_8859-1",     "iso_8859-1:1987", "l1",         "latin1",    "us-ascii",
      "windows-1252",   "x-cp1252"};
  if (kUtf8.count(label)) return "UTF-8";
  if (kWindows1252.count(label)) return "WINDOWS-1252";
  // A <meta> that could be read as ASCII is not UTF-16 (HTML5 reads it as UTF-8).
  if (from_meta && (label == "utf-16" || label == "utf-16le" || label == "utf-16be")) {
    return "UTF-8";
  }
  if (label == "x-user-defined") return "";
  std::string up = label;
  std::transform(up.begin(), up.end(), up.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return up;
}

// Converts with iconv; nullopt when iconv does not know `from`.
std::optional<std::string> convert(std::string_view in, const std::string& from, size_t& replaced) {
  iconv_t cd = iconv_open("UTF-8", from.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return std::nullopt;
  std::string out;
  out.reserve(in.size() + in.size() / 8);
  char* src = const_cast<char*>(in.data());  // iconv's signature; it does not write the input
  size_t left = in.size();
  char buf[16384];
  while (left > 0) {
    char* dst = buf;
    size_t room = sizeof buf;
    size_t rc = iconv(cd, &src, &left, &dst, &room);
    out.append(buf, static_cast<size_t>(dst - buf));
    if (rc != static_cast<size_t>(-1) || errno == E2BIG) continue;
    // EILSEQ: an invalid sequence; EINVAL: an incomplete one at the end. Replace one byte and
    // go on from a clean shift state.
    out += kReplacement;
    ++replaced;
    ++src;
    --left;
    iconv(cd, nullptr, nullptr, nullptr, nullptr);
  }
  char* dst = buf;
  size_t room = sizeof buf;
  iconv(cd, nullptr, nullptr, &dst, &room);  // flush a stateful encoding's final shift
  out.append(buf, static_cast<size_t>(dst - buf));
  iconv_close(cd);
  return out;
}

}  // namespace

std::string charset_from_content_type(std::string_view ct) {
  size_t semi = ct.find(';');
  while (semi != std::string_view::npos) {
    size_t next = ct.find(';', semi + 1);
    std::string_view param = ct.substr(
        semi + 1, next == std::string_view::npos ? std::string_view::npos : next - semi - 1);
    size_t eq = param.find('=');
    if (eq != std::string_view::npos && lower(trim(param.substr(0, eq))) == "charset") {
      std::string v = trim(param.substr(eq + 1));
      if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
        v = trim(std::string_view(v).substr(1, v.size() - 2));
      }
      return v;
    }
    semi = next;
  }
  return "";
}

std::string charset_from_meta(std::string_view html) {
  std::string_view h = html.substr(0, std::min(html.size(), kPrescanBytes));
  size_t i = 0;
  while (i < h.size()) {
    if (h.compare(i, 4, "<!--") == 0) {
      size_t end = h.find("-->", i + 4);
      if (end == std::string_view::npos) return "";
      i = end + 3;
      continue;
    }
    if (h[i] != '<' || i + 1 >= h.size()) {
      ++i;
      continue;
    }
    size_t n = i + 1;
    if (h[n] == '/') ++n;
    if (n >= h.size() || !std::isalpha(static_cast<unsigned char>(h[n]))) {
      // <!DOCTYPE ...>, <?...>, a stray '<': skip to the next '>'.
      size_t end = h.find('>', i + 1);
      if (end == std::string_view::npos) return "";
      i = end + 1;
      continue;
    }
    size_t name_end = n;
    while (name_end < h.size() && !space(h[name_end]) && h[name_end] != '/' && h[name_end] != '>') {
      ++name_end;
    }
    bool meta = h[i + 1] != '/' && lower(h.substr(n, name_end - n)) == "meta";
    i = name_end;
    // Attributes are read for every tag, so a "<meta charset=...>" inside another tag's
    // attribute value is not taken for one.
    std::string charset, content;
    bool http_equiv = false, has_content = false;
    while (auto a = next_attribute(h, i)) {
      if (!meta) continue;
      if (a->name == "charset" && charset.empty()) charset = trim(a->value);
      if (a->name == "http-equiv" && lower(trim(a->value)) == "content-type") http_equiv = true;
      if (a->name == "content" && !has_content) {
        content = a->value;
        has_content = true;
      }
    }
    if (!meta) continue;
    if (!charset.empty()) return charset;
    if (http_equiv && has_content) {
      std::string cs = charset_from_content_type(content);
      if (!cs.empty()) return cs;
    }
  }
  return "";
}

DecodedPage decode_page(std::string_view body, std::string_view content_type) {
  DecodedPage d;
  std::string name;
  std::string_view rest = body;
  if (body.substr(0, 3) == "\xEF\xBB\xBF") {
    name = "UTF-8";
    rest = body.substr(3);
    d.source = "bom";
  } else if (body.substr(0, 2) == "\xFE\xFF" || body.substr(0, 2) == "\xFF\xFE") {
    name = body[0] == '\xFE' ? "UTF-16BE" : "UTF-16LE";
    rest = body.substr(2);
    d.source = "bom";
  } else if (std::string cs = charset_from_content_type(content_type); !cs.empty()) {
    d.declared = cs;
    d.source = "http";
    name = iconv_name(lower(cs), false);
  } else if (std::string meta = charset_from_meta(body); !meta.empty()) {
    d.declared = meta;
    d.source = "meta";
    name = iconv_name(lower(meta), true);
  } else {
    name = "UTF-8";
    d.source = "default";
  }
  std::optional<std::string> text;
  if (!name.empty()) text = convert(rest, name, d.replaced);
  if (!text) {
    d.fallback = "unknown charset '" + d.declared + "' declared in the " +
                 (d.source == "http" ? std::string("Content-Type header") : "<meta> element") +
                 "; decoded as UTF-8 with replacement characters";
    name = "UTF-8";
    d.replaced = 0;
    text = convert(rest, name, d.replaced);
  }
  d.encoding = name;
  d.text = text ? std::move(*text) : std::string();
  return d;
}

}  // namespace scan
