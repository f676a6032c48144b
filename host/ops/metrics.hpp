// Metrics in the Prometheus text exposition format (version 0.0.4): a small registry of labelled
// counters and histograms, plus collectors that add samples computed at scrape time (gauges from
// the engine or the database, counters kept elsewhere).
//
// Threading: every method is thread-safe. Counter and histogram updates take one mutex per family
// (they happen once per job attempt, far from the hot claim path).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace jr::ops {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Writes the text format: HELP and TYPE once per family, before its samples.
class TextWriter {
 public:
  // `type` is counter, gauge, histogram or untyped.
  void family(const std::string& name, const std::string& type, const std::string& help);
  void sample(const std::string& name, const Labels& labels, double value);
  const std::string& str() const { return out_; }

  static std::string escape_label(const std::string& v);  // \\, \" and \n
  static std::string escape_help(const std::string& v);   // \\ and \n
  static std::string format_value(double v);              // integers exactly; +Inf, NaN

 private:
  std::string out_;
};

class CounterVec {
 public:
  CounterVec(std::string name, std::string help, std::vector<std::string> label_names);
  void inc(const std::vector<std::string>& label_values, double by = 1);
  double get(const std::vector<std::string>& label_values) const;
  void write(TextWriter& w) const;

 private:
  std::string name_, help_;
  std::vector<std::string> label_names_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, double> values_;
};

class HistogramVec {
 public:
  // `bounds`: upper bounds of the buckets, ascending (+Inf is added).
  HistogramVec(std::string name, std::string help, std::vector<std::string> label_names,
               std::vector<double> bounds);
  void observe(const std::vector<std::string>& label_values, double v);
  void write(TextWriter& w) const;

 private:
  struct Series {
    std::vector<uint64_t> counts;  // per bucket, not cumulative
    uint64_t count = 0;
    double sum = 0;
  };
  std::string name_, help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, Series> series_;
};

class Registry {
 public:
  CounterVec& counter(const std::string& name, const std::string& help,
                      std::vector<std::string> label_names);
  HistogramVec& histogram(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names, std::vector<double> bounds);
  // Called at every scrape, in registration order, after the counters and histograms.
  void collector(std::function<void(TextWriter&)> fn);
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<CounterVec>> counters_;
  std::vector<std::unique_ptr<HistogramVec>> histograms_;
  std::vector<std::function<void(TextWriter&)>> collectors_;
};

// Sandbox statistics, filled in by the sandbox executor when it is in use. The hook lets the
// sandbox (host/sandbox) publish without host/ops depending on it: register a provider once;
// /metrics then exposes jobrunner_sandbox_workers{plugin} and
// jobrunner_sandbox_restarts_total{plugin,reason}.
struct SandboxPluginStats {
  std::string plugin;
  int64_t workers = 0;                      // live worker processes
  std::map<std::string, int64_t> restarts;  // reason ("crash", "oom", "recycle", ...) -> count
};
using SandboxStatsProvider = std::function<std::vector<SandboxPluginStats>()>;
void set_sandbox_stats_provider(SandboxStatsProvider provider);  // thread-safe; {} to clear
std::vector<SandboxPluginStats> sandbox_stats();  // empty when no provider is registered
bool has_sandbox_stats_provider();

}  // namespace jr::ops
