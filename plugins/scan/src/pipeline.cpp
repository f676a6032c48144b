#include "scan/src/pipeline.hpp"

#include <algorithm>
#include <cctype>
#include <optional>
#include <pqxx/pqxx>

#include "scan/src/charset.hpp"
#include "scan/src/page_parser.hpp"
#include "scan/src/report.hpp"

namespace scan {

namespace {

// Progress (percent) at each point of the flow.
constexpr int kCrawlStart = 5, kCrawlDone = 25, kParseStart = 30, kParseDone = 45,
              kAnalyzeStart = 50, kAnalyzeDone = 65, kGenerateStart = 70, kTeaser = 80,
              kLinksDone = 95;

FetchConfig link_config(const ScanConfig& cfg) {
  FetchConfig f = cfg.fetch;
  f.request_timeout_ms = cfg.link_check_timeout_ms;
  f.connect_timeout_ms = std::min(f.connect_timeout_ms, cfg.link_check_timeout_ms);
  return f;
}

std::string media_type(const std::string& content_type) {
  std::string t = content_type.substr(0, content_type.find(';'));
  t.erase(std::remove_if(t.begin(), t.end(), [](unsigned char c) { return std::isspace(c); }),
          t.end());
  std::transform(t.begin(), t.end(), t.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return t;
}

struct ScanLock {
  pqxx::connection& c;
  const std::string& id;
  ~ScanLock() {
    try {
      if (c.is_open()) scan_unlock(c, id);
    } catch (...) {  // a broken connection drops the session lock by itself
    }
  }
};

}  // namespace

Scanner::Scanner(ScanConfig cfg, std::shared_ptr<Resolver> resolver)
    : cfg_(std::move(cfg)),
      fetcher_(cfg_.fetch, resolver),
      link_fetcher_(link_config(cfg_), resolver),
      store_(cfg_.database_url, static_cast<size_t>(cfg_.db_pool_size)) {}

nlohmann::json Scanner::crawl(const ScanRequest& req, ScanObserver& obs) {
  FetchResult r = fetcher_.fetch(req.url, Method::kGet, [&obs] { return obs.cancelled(); });
  if (r.status < 200 || r.status > 299) {
    throw FetchError(FetchErrorKind::kCrawl,
                     "HTTP " + std::to_string(r.status) + " from " + r.final_url, r.status >= 500);
  }
  std::string mt = media_type(r.content_type);
  if (mt != "text/html" && mt != "application/xhtml+xml") {
    throw FetchError(FetchErrorKind::kCrawl, "unsupported content type '" + r.content_type +
                                                 "' from " + r.final_url +
                                                 " (want text/html or application/xhtml+xml)");
  }
  // gumbo parses UTF-8 only: decode what the page declares (header, BOM, <meta>) first.
  DecodedPage page = decode_page(r.body, r.content_type);
  if (!page.fallback.empty()) obs.log("scan " + req.scan_id + ": " + page.fallback);
  r.body = std::move(page.text);
  // NUL bytes cannot live in jsonb text and HTML parsers drop them anyway.
  r.body.erase(std::remove(r.body.begin(), r.body.end(), '\0'), r.body.end());
  nlohmann::json hops = nlohmann::json::array();
  for (const auto& h : r.hops) {
    hops.push_back({{"url", h.url}, {"status", h.status}, {"address", h.address}});
  }
  return {{"final_url", r.final_url},
          {"status", r.status},
          {"content_type", r.content_type},
          {"charset", page.encoding},
          {"charset_source", page.source},
          {"bytes", r.body.size()},
          {"fetch_ms", r.fetch_ms},
          {"hops", hops},
          {"body", r.body}};
}

std::vector<LinkCheck> Scanner::check_links(const std::vector<std::string>& urls, ScanObserver& obs,
                                            pqxx::connection& c, const std::string& id,
                                            int64_t job_id) {
  std::vector<LinkCheck> out;
  for (size_t i = 0; i < urls.size(); ++i) {
    if (obs.cancelled()) throw ScanCancelled();
    LinkCheck lc;
    lc.url = urls[i];
    try {
      FetchResult r =
          link_fetcher_.fetch(urls[i], Method::kHead, [&obs] { return obs.cancelled(); });
      lc.status = r.status;
      if (r.status == 405 || r.status == 501) {
        lc.outcome = "skipped";
        lc.detail = "HEAD not supported";
      } else {
        lc.outcome = r.status >= 400 ? "broken" : "ok";
      }
    } catch (const FetchError& e) {
      if (e.kind() == FetchErrorKind::kCancelled) throw ScanCancelled();
      lc.outcome = e.kind() == FetchErrorKind::kValidation ? "skipped" : "broken";
      lc.detail = e.what();
    }
    out.push_back(std::move(lc));
    int pct = kTeaser + static_cast<int>((kLinksDone - kTeaser) * (i + 1) / urls.size());
    scan_write_status(c, id, "TEASER_READY", "GENERATE", pct, job_id);
    // The job's step names the status once past RUNNING (as transition() does), so a poller
    // never sees it go from TEASER_READY back to GENERATE.
    obs.progress(pct, "TEASER_READY");
  }
  return out;
}

nlohmann::json Scanner::run(const ScanRequest& req, ScanObserver& obs, StopAfter stop) {
  auto lease = store_.acquire();
  pqxx::connection& c = lease.conn();
  store_.ensure_schema(c);
  const std::string& id = req.scan_id;
  if (!scan_try_lock(c, id)) throw ScanBusy("scan " + id + " is running elsewhere");
  ScanLock unlock{c, id};
  ScanRow row = scan_load_or_create(c, id, req.url, req.user_id, cfg_.scan_job_ttl_seconds);
  if (row.url != req.url) {
    throw ScanConflict("scan " + id + " exists for another URL ('" + row.url + "')");
  }
  if (row.status == "FULL_READY" && row.result.is_object()) {
    obs.log("scan " + id + ": already FULL_READY; returning the stored result");
    obs.progress(100, "FULL_READY");
    return row.result;
  }

  auto transition = [&](const std::string& status, const std::string& step, int pct) {
    // Records this job in the row: a finalizer for an older job of the scan leaves it alone.
    scan_write_status(c, id, status, step, pct, req.job_id);
    obs.progress(pct, status == "RUNNING" ? step : status);
    obs.log("scan " + id + ": " + status + (status == "RUNNING" ? " " + step : "") + " " +
            std::to_string(pct) + "%");
  };
  auto fail = [&](const std::string& state, const std::string& msg) {
    scan_write_error(c, id, state, msg);
    obs.log("scan " + id + ": " + state + ": " + msg);
    throw ScanFailed(state, msg);
  };
  auto check_cancel = [&] {
    if (obs.cancelled()) throw ScanCancelled();
  };

  nlohmann::json state = row.state.is_object() ? row.state : nlohmann::json::object();
  if (!row.state.is_object()) obs.log("scan " + id + ": QUEUED");

  // CRAWL
  if (!state.contains("crawl")) {
    transition("RUNNING", "CRAWL", kCrawlStart);
    try {
      state["crawl"] = crawl(req, obs);
    } catch (const FetchError& e) {
      if (e.kind() == FetchErrorKind::kCancelled) throw ScanCancelled();
      if (e.kind() == FetchErrorKind::kCrawl && e.transient() && req.attempt < req.max_attempts) {
        std::string msg = "attempt " + std::to_string(req.attempt) + " of " +
                          std::to_string(req.max_attempts) + " failed: " + e.what() + "; retrying";
        scan_write_retry(c, id, msg);
        obs.log("scan " + id + ": " + msg);
        throw ScanRetry(msg);
      }
      fail(e.kind() == FetchErrorKind::kValidation ? "ERROR_VALIDATION" : "ERROR_CRAWL", e.what());
    }
    scan_write_state(c, id, state, kCrawlDone);
  }
  if (stop == StopAfter::kCrawl) return nullptr;
  check_cancel();

  // PARSE
  if (!state.contains("parse")) {
    transition("RUNNING", "PARSE", kParseStart);
    try {
      std::string body = state["crawl"].value("body", "");
      if (body.empty()) throw std::runtime_error("the document is empty: nothing to analyze");
      state["parse"] = parse_page(body, state["crawl"].at("final_url").get<std::string>());
    } catch (const std::exception& e) {
      fail("ERROR_ANALYZE", std::string("parse failed: ") + e.what());
    }
    state["crawl"].erase("body");  // the parse output is all later steps need
    scan_write_state(c, id, state, kParseDone);
  }
  if (stop == StopAfter::kParse) return nullptr;
  check_cancel();

  PageFacts page;
  try {
    page = state["parse"].get<PageFacts>();
  } catch (const std::exception& e) {
    fail("ERROR_ANALYZE", std::string("stored parse output unreadable: ") + e.what());
  }

  // ANALYZE
  if (!state.contains("analyze")) {
    transition("RUNNING", "ANALYZE", kAnalyzeStart);
    try {
      state["analyze"] = analyze_page(page, state["crawl"], cfg_.report);
    } catch (const std::exception& e) {
      fail("ERROR_ANALYZE", std::string("analysis failed: ") + e.what());
    }
    scan_write_state(c, id, state, kAnalyzeDone);
  }
  if (stop == StopAfter::kAnalyze) return nullptr;
  check_cancel();

  // GENERATE: on-page findings first (teaser), then the sampled link checks (full report).
  std::vector<Finding> findings;
  if (!state.contains("findings")) {
    transition("RUNNING", "GENERATE", kGenerateStart);
    try {
      findings = page_findings(page, state["analyze"], cfg_.report);
    } catch (const std::exception& e) {
      fail("ERROR_ANALYZE", std::string("findings failed: ") + e.what());
    }
    state["findings"] = findings;
    nlohmann::json teaser = {
        {"url", state["crawl"]["final_url"]},
        {"finding_count", findings.size()},
        {"findings", nlohmann::json(std::vector<Finding>(
                         findings.begin(), findings.begin() + static_cast<long>(std::min<size_t>(
                                                                  3, findings.size()))))}};
    state["teaser"] = teaser;
    scan_write_teaser(c, id, teaser, state, kTeaser);
    obs.progress(kTeaser, "TEASER_READY");
    obs.log("scan " + id + ": TEASER_READY " + std::to_string(kTeaser) + "%");
  } else {
    for (const auto& f : state["findings"]) {
      findings.push_back({f.at("id"), f.at("severity"), f.at("message"), f.at("details")});
    }
    if (row.status != "TEASER_READY") transition("TEASER_READY", "GENERATE", kTeaser);
  }
  if (stop == StopAfter::kTeaser) return nullptr;

  std::vector<std::string> sample =
      sample_internal_links(page, static_cast<size_t>(std::max(0, cfg_.report.max_link_checks)));
  std::vector<LinkCheck> checks = check_links(sample, obs, c, id, req.job_id);
  add_link_findings(findings, checks);

  nlohmann::json link_json = nlohmann::json::array();
  for (const auto& lc : checks) {
    link_json.push_back(
        {{"url", lc.url}, {"status", lc.status}, {"outcome", lc.outcome}, {"detail", lc.detail}});
  }
  nlohmann::json page_json = state["parse"];
  page_json.erase("visible_text");
  const nlohmann::json& crawl = state["crawl"];
  nlohmann::json result = {{"scan_id", id},
                           {"url", req.url},
                           {"final_url", crawl["final_url"]},
                           {"http_status", crawl["status"]},
                           {"content_type", crawl["content_type"]},
                           {"charset", crawl.contains("charset") ? crawl["charset"] : nullptr},
                           {"redirects", crawl["hops"]},
                           {"page", page_json},
                           {"metrics", state["analyze"]["metrics"]},
                           {"keyphrases", state["analyze"]["keyphrases"]},
                           {"findings", findings},
                           {"link_checks", link_json},
                           {"teaser", state["teaser"]}};
  if (!req.user_id.empty()) result["user_id"] = req.user_id;
  scan_write_result(c, id, result);
  obs.progress(100, "FULL_READY");
  obs.log("scan " + id + ": FULL_READY 100% (" + std::to_string(findings.size()) + " findings)");
  return result;
}

std::string Scanner::finalize_status(const std::string& error_kind, const std::string& state) {
  bool word = !error_kind.empty() && error_kind.size() <= 32 &&
              std::all_of(error_kind.begin(), error_kind.end(),
                          [](char ch) { return (ch >= 'a' && ch <= 'z') || ch == '_'; });
  if (!word) return state == "cancelled" ? "ERROR_CANCELLED" : "ERROR_UNKNOWN";
  if (error_kind == "error") return "ERROR_INTERNAL";
  std::string out = "ERROR_";
  for (char ch : error_kind) out.push_back(static_cast<char>(std::toupper(ch)));
  return out;
}

nlohmann::json Scanner::finalize(const FinalizeRequest& f) {
  auto lease = store_.acquire();
  pqxx::connection& c = lease.conn();
  store_.ensure_schema(c);
  if (!scan_try_lock(c, f.scan_id)) throw ScanBusy("scan " + f.scan_id + " is running elsewhere");
  ScanLock unlock{c, f.scan_id};
  std::string status = finalize_status(f.error_kind, f.state);
  std::string reason =
      f.error.empty() ? "job " + std::to_string(f.job_id) + " " + f.state : f.error;
  bool written = false;
  std::optional<std::string> now =
      scan_write_final(c, f.scan_id, f.url, f.job_id, status, reason, &written);
  return {{"scan_id", f.scan_id},
          {"status", now ? nlohmann::json(*now) : nlohmann::json(nullptr)},
          {"updated", written}};
}

int64_t Scanner::cleanup_expired() {
  auto lease = store_.acquire();
  store_.ensure_schema(lease.conn());
  return scan_delete_expired(lease.conn(), cfg_.scan_job_ttl_seconds);
}

}  // namespace scan
