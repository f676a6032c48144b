#include "dataset_parse/src/ingest.hpp"

#include <charconv>
#include <chrono>
#include <cstring>
#include <jobrunner/plugin.hpp>
#include <optional>
#include <tuple>

namespace dataset_parse {

namespace {

constexpr size_t kMaxLineBytes = 64 * 1024;
const std::vector<std::string> kColumns = {"dataset_id", "name", "sex", "count", "year", "rank"};

// One row as libpqxx 6.4's stream_to wants it: a std::tuple. const char* fields are written as
// text (nullptr = NULL), ints through pqxx's own conversion.
using CopyRow = std::tuple<const char*, const char*, const char*, int, int, const char*>;

class Loader {
 public:
  Loader(pqxx::transaction_base& tx, const std::string& dataset_id, FileParser& fp,
         const IngestOptions& opts, Metrics& m)
      : tx_(tx), id_(dataset_id), fp_(fp), opts_(opts), m_(m) {
    name_.reserve(128);
  }

  void line(std::string_view l) {
    ++line_no_;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (line_no_ == 1 && l.size() >= 3 && std::memcmp(l.data(), "\xEF\xBB\xBF", 3) == 0) {
      l.remove_prefix(3);  // UTF-8 byte order mark
    }
    if (l.empty()) return;
    NameRow row;
    switch (fp_.parse_line(l, row, reason_)) {
      case LineResult::kHeader:
        return;
      case LineResult::kSkip:
        ++m_.rows_read;
        ++m_.rows_skipped;
        ++m_.skip_reasons[reason_];
        return;
      case LineResult::kReject:
        reject(reason_);
        return;
      case LineResult::kRow:
        ++m_.rows_read;
        write(row);
        return;
    }
  }

  void overlong() {
    ++line_no_;
    reject("line longer than " + std::to_string(kMaxLineBytes) + " bytes");
  }

  void finish() {
    if (stream_) {
      stream_->complete();
      stream_.reset();
      ++m_.batches;
    }
  }

 private:
  void reject(const std::string& why) {
    ++m_.rows_read;
    ++m_.rows_rejected;
    if (m_.first_rejections.size() < Metrics::kMaxReasons) {
      m_.first_rejections.push_back("line " + std::to_string(line_no_) + ": " + why);
    }
  }

  void write(const NameRow& row) {
    if (!stream_) stream_.emplace(tx_, "names", kColumns);
    name_.assign(row.name);
    const char* rank = nullptr;
    if (row.rank > 0) {
      auto r = std::to_chars(rank_buf_, rank_buf_ + sizeof rank_buf_ - 1, row.rank);
      *r.ptr = '\0';
      rank = rank_buf_;
    }
    *stream_ << CopyRow(id_.c_str(), name_.c_str(), row.sex == 'F' ? "F" : "M", row.count, row.year,
                        rank);
    ++m_.rows_inserted;
    if (opts_.test_fail_after_rows > 0 && m_.rows_inserted == opts_.test_fail_after_rows) {
      // TEST ONLY: a row the database refuses (CHECK (count > 0)), mid-stream.
      *stream_ << CopyRow(id_.c_str(), "TestHookRow", "F", -1, row.year, nullptr);
    }
    if (++in_batch_ >= opts_.batch_size) {
      stream_->complete();
      stream_.reset();
      in_batch_ = 0;
      ++m_.batches;
    }
  }

  pqxx::transaction_base& tx_;
  const std::string& id_;
  FileParser& fp_;
  const IngestOptions& opts_;
  Metrics& m_;
  std::optional<pqxx::stream_to> stream_;
  int64_t in_batch_ = 0;
  int64_t line_no_ = 0;
  std::string name_;
  std::string reason_;
  char rank_buf_[16];
};

std::string percent_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", v * 100);
  return buf;
}

}  // namespace

nlohmann::json Metrics::to_json() const {
  double rps = duration_ms > 0 ? static_cast<double>(rows_inserted) * 1000.0 / duration_ms : 0;
  return {{"parser", parser},
          {"file", file},
          {"rows_read", rows_read},
          {"rows_inserted", rows_inserted},
          {"rows_rejected", rows_rejected},
          {"rows_skipped", rows_skipped},
          {"rows_deleted", rows_deleted},
          {"first_rejections", first_rejections},
          {"skip_reasons", skip_reasons},
          {"batches", batches},
          {"bytes", bytes_read},
          {"bytes_total", bytes_total},
          {"duration_ms", duration_ms},
          {"rows_per_second", rps}};
}

void ingest(pqxx::transaction_base& tx, const std::string& dataset_id, InputStream& in,
            FileParser& fp, const IngestOptions& opts, IngestObserver& obs, Metrics& m) {
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  m.bytes_total = in.size();
  Loader loader(tx, dataset_id, fp, opts, m);
  std::vector<char> buf(opts.read_buffer_bytes);
  std::string carry;  // a line split across reads
  bool carry_overlong = false;
  uint64_t next_report = 0;
  auto report = [&] {
    if (m.bytes_read < next_report) return;
    m.duration_ms = elapsed();
    obs.on_progress(m);
    uint64_t step = m.bytes_total > 0 ? std::max<uint64_t>(m.bytes_total / 20, 1) : 8u << 20;
    next_report = (m.bytes_read / step + 1) * step;
  };
  report();
  for (;;) {
    if (obs.cancelled()) throw jobrunner::Cancelled();
    size_t n = in.read(buf.data(), buf.size());
    if (n == 0) break;
    m.bytes_read += n;
    const char* p = buf.data();
    const char* end = p + n;
    if (!carry.empty() || carry_overlong) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
      const char* stop = nl ? nl : end;
      if (!carry_overlong && carry.size() + (stop - p) <= kMaxLineBytes) {
        carry.append(p, stop);
      } else {
        carry_overlong = true;
        carry.clear();
      }
      if (nl == nullptr) continue;
      if (carry_overlong) {
        loader.overlong();
      } else {
        loader.line(carry);
      }
      carry.clear();
      carry_overlong = false;
      p = nl + 1;
    }
    for (;;) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
      if (nl == nullptr) {
        if (static_cast<size_t>(end - p) > kMaxLineBytes) {
          carry_overlong = true;
        } else {
          carry.assign(p, end);
        }
        break;
      }
      loader.line(std::string_view(p, nl - p));
      p = nl + 1;
    }
    report();
  }
  if (carry_overlong) {
    loader.overlong();
  } else if (!carry.empty()) {
    loader.line(carry);
  }
  loader.finish();
  m.duration_ms = elapsed();
  if (m.rows_read == 0) throw FormatError("invalid file format: the file has no data lines");
  if (static_cast<double>(m.rows_rejected) >
      opts.max_bad_line_ratio * static_cast<double>(m.rows_read)) {
    std::string msg = "invalid file format: " + std::to_string(m.rows_rejected) + " of " +
                      std::to_string(m.rows_read) + " lines are malformed (" +
                      percent_text(static_cast<double>(m.rows_rejected) / m.rows_read) +
                      ", above max_bad_line_ratio " + percent_text(opts.max_bad_line_ratio) + ")";
    if (!m.first_rejections.empty()) msg += "; first: " + m.first_rejections.front();
    throw FormatError(msg);
  }
  obs.on_progress(m);
}

}  // namespace dataset_parse
