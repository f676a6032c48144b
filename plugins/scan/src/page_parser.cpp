#include "scan/src/page_parser.hpp"

#include <gumbo.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string_view>

#include "scan/src/url_util.hpp"

namespace scan {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Collapses runs of whitespace into single spaces and trims.
std::string collapse(std::string_view s) {
  std::string out;
  bool space = false;
  for (unsigned char c : s) {
    if (std::isspace(c)) {
      space = !out.empty();
    } else {
      if (space) out.push_back(' ');
      space = false;
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

const char* attr(const GumboNode* n, const char* name) {
  const GumboAttribute* a = gumbo_get_attribute(&n->v.element.attributes, name);
  return a ? a->value : nullptr;
}

std::string attr_or(const GumboNode* n, const char* name) {
  const char* v = attr(n, name);
  return v ? v : "";
}

bool has_token(const std::string& list, const std::string& token) {
  std::string l = lower(list);
  size_t pos = 0;
  while (pos < l.size()) {
    while (pos < l.size() && std::isspace(static_cast<unsigned char>(l[pos]))) ++pos;
    size_t end = pos;
    while (end < l.size() && !std::isspace(static_cast<unsigned char>(l[end]))) ++end;
    if (l.compare(pos, end - pos, token) == 0 && end > pos) return true;
    pos = end;
  }
  return false;
}

bool skipped(GumboTag t) {
  return t == GUMBO_TAG_SCRIPT || t == GUMBO_TAG_STYLE || t == GUMBO_TAG_NOSCRIPT ||
         t == GUMBO_TAG_TEMPLATE || t == GUMBO_TAG_HEAD || t == GUMBO_TAG_IFRAME ||
         t == GUMBO_TAG_OBJECT || t == GUMBO_TAG_SVG || t == GUMBO_TAG_CANVAS;
}

bool inline_tag(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_A:
    case GUMBO_TAG_SPAN:
    case GUMBO_TAG_B:
    case GUMBO_TAG_I:
    case GUMBO_TAG_EM:
    case GUMBO_TAG_STRONG:
    case GUMBO_TAG_SMALL:
    case GUMBO_TAG_ABBR:
    case GUMBO_TAG_CODE:
    case GUMBO_TAG_SUB:
    case GUMBO_TAG_SUP:
    case GUMBO_TAG_MARK:
    case GUMBO_TAG_LABEL:
    case GUMBO_TAG_TIME:
    case GUMBO_TAG_Q:
    case GUMBO_TAG_CITE:
    case GUMBO_TAG_U:
    case GUMBO_TAG_S:
    case GUMBO_TAG_FONT:
    case GUMBO_TAG_BIG:
      return true;
    default:
      return false;
  }
}

// All text below `n` (for headings, anchors, <title>), whitespace collapsed, capped.
std::string text_of(const GumboNode* n, size_t cap = 300) {
  std::string out;
  std::vector<const GumboNode*> stack{n};
  while (!stack.empty() && out.size() < cap * 2) {
    const GumboNode* c = stack.back();
    stack.pop_back();
    if (c->type == GUMBO_NODE_TEXT || c->type == GUMBO_NODE_WHITESPACE ||
        c->type == GUMBO_NODE_CDATA) {
      out += c->v.text.text;
      out += ' ';
    } else if (c->type == GUMBO_NODE_ELEMENT || c->type == GUMBO_NODE_TEMPLATE) {
      if (c != n && (c->v.element.tag == GUMBO_TAG_SCRIPT || c->v.element.tag == GUMBO_TAG_STYLE)) {
        continue;
      }
      const GumboVector& ch = c->v.element.children;
      for (unsigned i = ch.length; i > 0; --i)
        stack.push_back(static_cast<GumboNode*>(ch.data[i - 1]));
    }
  }
  std::string t = collapse(out);
  if (t.size() > cap) t.resize(cap);
  return t;
}

int64_t count_words(std::string_view text) {
  int64_t n = 0;
  bool in_word = false, has_alnum = false;
  for (unsigned char c : text) {
    if (std::isspace(c)) {
      if (in_word && has_alnum) ++n;
      in_word = has_alnum = false;
    } else {
      in_word = true;
      has_alnum = has_alnum || std::isalnum(c) || c >= 0x80;
    }
  }
  if (in_word && has_alnum) ++n;
  return n;
}

void collect_types(const nlohmann::json& j, nlohmann::json& types, int depth = 0) {
  if (depth > 4) return;
  if (j.is_array()) {
    for (const auto& e : j) collect_types(e, types, depth + 1);
  } else if (j.is_object()) {
    if (auto t = j.find("@type"); t != j.end()) {
      if (t->is_string()) types.push_back(*t);
      if (t->is_array()) {
        for (const auto& e : *t) {
          if (e.is_string()) types.push_back(e);
        }
      }
    }
    if (auto g = j.find("@graph"); g != j.end()) collect_types(*g, types, depth + 1);
  }
}

struct Walker {
  const std::string& page_url;
  std::string base;
  std::string page_host;
  PageFacts& f;
  std::string text;  // visible text being built
  std::set<std::string> resources;

  std::string abs(const std::string& ref) const {
    auto r = resolve_url(base, ref);
    return r ? *r : std::string();
  }
  void resource(const std::string& ref) {
    if (ref.empty()) return;
    std::string a = abs(ref);
    resources.insert(a.empty() ? ref : a);
  }

  void element(const GumboNode* n) {
    GumboTag tag = n->v.element.tag;
    switch (tag) {
      case GUMBO_TAG_TITLE:
        if (!f.has_title) {
          f.has_title = true;
          f.title = text_of(n, 1000);
        }
        break;
      case GUMBO_TAG_META: {
        std::string name = lower(attr_or(n, "name"));
        std::string prop = lower(attr_or(n, "property"));
        std::string content = collapse(attr_or(n, "content"));
        if (name == "description" && !f.has_meta_description) {
          f.has_meta_description = true;
          f.meta_description = content;
        } else if (name == "robots" && f.robots.empty()) {
          f.robots = content;
        }
        if (prop.rfind("og:", 0) == 0 && !f.open_graph.count(prop)) f.open_graph[prop] = content;
        break;
      }
      case GUMBO_TAG_LINK: {
        std::string rel = attr_or(n, "rel");
        std::string href = attr_or(n, "href");
        if (has_token(rel, "canonical") && f.canonical.empty()) f.canonical = abs(href);
        if (has_token(rel, "stylesheet") || has_token(rel, "icon") || has_token(rel, "preload") ||
            has_token(rel, "modulepreload")) {
          resource(href);
        }
        break;
      }
      case GUMBO_TAG_SCRIPT: {
        resource(attr_or(n, "src"));
        std::string type = lower(collapse(attr_or(n, "type")));
        if (type == "application/ld+json") {
          std::string body = text_of(n, 1 << 20);
          nlohmann::json block = {{"types", nlohmann::json::array()}};
          nlohmann::json data = nlohmann::json::parse(body, nullptr, false);
          block["valid"] = !data.is_discarded();
          if (data.is_discarded()) {
            block["error"] = "not valid JSON";
          } else {
            collect_types(data, block["types"]);
            if (body.size() <= 16 * 1024) block["data"] = data;
          }
          f.json_ld.push_back(block);
        }
        break;
      }
      case GUMBO_TAG_H1:
      case GUMBO_TAG_H2:
      case GUMBO_TAG_H3:
      case GUMBO_TAG_H4:
      case GUMBO_TAG_H5:
      case GUMBO_TAG_H6:
        f.headings.push_back({static_cast<int>(tag - GUMBO_TAG_H1) + 1, text_of(n)});
        break;
      case GUMBO_TAG_A: {
        const char* href = attr(n, "href");
        if (href == nullptr) break;
        std::string url = abs(href);
        if (url.empty()) break;  // javascript:, mailto:, fragment-only...
        Link l;
        l.url = url;
        l.text = text_of(n, 200);
        l.internal = same_site(url_host(url), page_host);
        l.nofollow = has_token(attr_or(n, "rel"), "nofollow");
        ++f.links_total;
        (l.internal ? f.links_internal : f.links_external)++;
        if (l.nofollow) ++f.links_nofollow;
        if (f.links.size() < PageFacts::kMaxLinks) f.links.push_back(std::move(l));
        break;
      }
      case GUMBO_TAG_IMG: {
        Image im;
        std::string src = attr_or(n, "src");
        im.src = abs(src);
        if (im.src.empty()) im.src = src;
        resource(src);
        const char* alt = attr(n, "alt");
        im.has_alt = alt != nullptr;
        im.alt = alt ? collapse(alt) : "";
        ++f.images_total;
        (im.has_alt ? f.images_with_alt : f.images_without_alt)++;
        if (f.images.size() < PageFacts::kMaxImages) f.images.push_back(std::move(im));
        break;
      }
      case GUMBO_TAG_IFRAME:
      case GUMBO_TAG_VIDEO:
      case GUMBO_TAG_AUDIO:
      case GUMBO_TAG_SOURCE:
      case GUMBO_TAG_EMBED:
        resource(attr_or(n, "src"));
        break;
      case GUMBO_TAG_OBJECT:
        resource(attr_or(n, "data"));
        break;
      default:
        break;
    }
  }

  // Iterative walk (deeply nested pages must not overflow the stack).
  void walk(const GumboNode* root) {
    struct Frame {
      const GumboNode* node;
      bool visible;
      bool closing;
    };
    std::vector<Frame> stack{{root, true, false}};
    while (!stack.empty()) {
      Frame fr = stack.back();
      stack.pop_back();
      const GumboNode* n = fr.node;
      if (fr.closing) {
        text += '\n';
        continue;
      }
      if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_CDATA) {
        if (fr.visible && text.size() < PageFacts::kMaxText * 2) {
          text += n->v.text.text;
          text += ' ';
        }
        continue;
      }
      if (n->type == GUMBO_NODE_WHITESPACE) {
        if (fr.visible) text += ' ';
        continue;
      }
      if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_TEMPLATE) continue;
      element(n);
      GumboTag tag = n->v.element.tag;
      bool visible = fr.visible && !skipped(tag);
      bool block = !inline_tag(tag);
      if (block && visible) {
        text += '\n';
        stack.push_back({n, visible, true});
      }
      const GumboVector& ch = n->v.element.children;
      for (unsigned i = ch.length; i > 0; --i) {
        stack.push_back({static_cast<GumboNode*>(ch.data[i - 1]), visible, false});
      }
    }
  }
};

// Collapses spaces but keeps newlines as block boundaries (one per run).
std::string tidy_text(const std::string& raw) {
  std::string out;
  bool space = false, newline = false;
  for (unsigned char c : raw) {
    if (c == '\n') {
      newline = !out.empty();
      space = false;
    } else if (std::isspace(c)) {
      space = !out.empty();
    } else {
      if (newline) {
        out.push_back('\n');
      } else if (space) {
        out.push_back(' ');
      }
      newline = space = false;
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

}  // namespace

PageFacts parse_page(const std::string& html, const std::string& page_url) {
  PageFacts f;
  GumboOutput* out = gumbo_parse_with_options(&kGumboDefaultOptions, html.data(), html.size());
  Walker w{page_url, page_url, url_host(page_url), f, {}, {}};
  // <base href> changes how every relative URL resolves, so find it first.
  std::vector<const GumboNode*> stack{out->root};
  while (!stack.empty()) {
    const GumboNode* n = stack.back();
    stack.pop_back();
    if (n->type != GUMBO_NODE_ELEMENT) continue;
    if (n->v.element.tag == GUMBO_TAG_BASE) {
      if (auto b = resolve_url(page_url, attr_or(n, "href"))) w.base = *b;
      break;
    }
    if (n->v.element.tag == GUMBO_TAG_BODY) continue;
    const GumboVector& ch = n->v.element.children;
    for (unsigned i = 0; i < ch.length; ++i) stack.push_back(static_cast<GumboNode*>(ch.data[i]));
  }
  const GumboNode* html_el = out->root;
  if (html_el->type == GUMBO_NODE_ELEMENT) f.lang = collapse(attr_or(html_el, "lang"));
  w.walk(out->root);
  gumbo_destroy_output(&kGumboDefaultOptions, out);

  f.visible_text = tidy_text(w.text);
  f.text_bytes = static_cast<int64_t>(f.visible_text.size());
  f.word_count = count_words(f.visible_text);
  if (f.visible_text.size() > PageFacts::kMaxText) {
    size_t cut = PageFacts::kMaxText;
    while (cut > 0 && (static_cast<unsigned char>(f.visible_text[cut]) & 0xC0) == 0x80) --cut;
    f.visible_text.resize(cut);
  }
  f.resource_count = static_cast<int64_t>(w.resources.size());
  return f;
}

void to_json(nlohmann::json& j, const PageFacts& p) {
  nlohmann::json headings = nlohmann::json::array();
  for (const auto& h : p.headings) headings.push_back({{"level", h.level}, {"text", h.text}});
  nlohmann::json links = nlohmann::json::array();
  for (const auto& l : p.links) {
    links.push_back(
        {{"url", l.url}, {"text", l.text}, {"internal", l.internal}, {"nofollow", l.nofollow}});
  }
  nlohmann::json images = nlohmann::json::array();
  for (const auto& i : p.images) {
    images.push_back({{"src", i.src}, {"alt", i.alt}, {"has_alt", i.has_alt}});
  }
  j = {{"has_title", p.has_title},
       {"title", p.title},
       {"has_meta_description", p.has_meta_description},
       {"meta_description", p.meta_description},
       {"canonical", p.canonical},
       {"robots", p.robots},
       {"lang", p.lang},
       {"headings", headings},
       {"links", links},
       {"links_total", p.links_total},
       {"links_internal", p.links_internal},
       {"links_external", p.links_external},
       {"links_nofollow", p.links_nofollow},
       {"images", images},
       {"images_total", p.images_total},
       {"images_with_alt", p.images_with_alt},
       {"images_without_alt", p.images_without_alt},
       {"word_count", p.word_count},
       {"text_bytes", p.text_bytes},
       {"resource_count", p.resource_count},
       {"json_ld", p.json_ld},
       {"open_graph", p.open_graph},
       {"visible_text", p.visible_text}};
}

void from_json(const nlohmann::json& j, PageFacts& p) {
  p = PageFacts{};
  p.has_title = j.at("has_title").get<bool>();
  p.title = j.at("title").get<std::string>();
  p.has_meta_description = j.at("has_meta_description").get<bool>();
  p.meta_description = j.at("meta_description").get<std::string>();
  p.canonical = j.at("canonical").get<std::string>();
  p.robots = j.at("robots").get<std::string>();
  p.lang = j.at("lang").get<std::string>();
  for (const auto& h : j.at("headings")) p.headings.push_back({h.at("level"), h.at("text")});
  for (const auto& l : j.at("links")) {
    p.links.push_back({l.at("url"), l.at("text"), l.at("internal"), l.at("nofollow")});
  }
  p.links_total = j.at("links_total");
  p.links_internal = j.at("links_internal");
  p.links_external = j.at("links_external");
  p.links_nofollow = j.at("links_nofollow");
  for (const auto& i : j.at("images"))
    p.images.push_back({i.at("src"), i.at("alt"), i.at("has_alt")});
  p.images_total = j.at("images_total");
  p.images_with_alt = j.at("images_with_alt");
  p.images_without_alt = j.at("images_without_alt");
  p.word_count = j.at("word_count");
  p.text_bytes = j.at("text_bytes");
  p.resource_count = j.at("resource_count");
  p.json_ld = j.at("json_ld");
  p.open_graph = j.at("open_graph").get<std::map<std::string, std::string>>();
  p.visible_text = j.at("visible_text").get<std::string>();
}

}  // namespace scan
