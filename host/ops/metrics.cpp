#include "metrics.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace jr::ops {

std::string TextWriter::escape_label(const std::string& v) {
  std::string o;
  o.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      o += "\\\\";
    } else if (c == '"') {
      o += "\\\"";
    } else if (c == '\n') {
      o += "\\n";
    } else {
      o += c;
    }
  }
  return o;
}

std::string TextWriter::escape_help(const std::string& v) {
  std::string o;
  for (char c : v) {
    if (c == '\\') {
      o += "\\\\";
    } else if (c == '\n') {
      o += "\\n";
    } else {
      o += c;
    }
  }
  return o;
}

std::string TextWriter::format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  char buf[32];
  for (int precision = 15; precision <= 17; ++precision) {  // shortest text that round-trips
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void TextWriter::family(const std::string& name, const std::string& type, const std::string& help) {
  out_ += "# HELP " + name + " " + escape_help(help) + "\n";
  out_ += "# TYPE " + name + " " + type + "\n";
}

void TextWriter::sample(const std::string& name, const Labels& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += k + "=\"" + escape_label(v) + "\"";
    }
    out_ += '}';
  }
  out_ += ' ' + format_value(value) + '\n';
}

namespace {
Labels zip(const std::vector<std::string>& names, const std::vector<std::string>& values) {
  Labels l;
  for (size_t i = 0; i < names.size(); ++i) l.emplace_back(names[i], values[i]);
  return l;
}
}  // namespace

CounterVec::CounterVec(std::string name, std::string help, std::vector<std::string> label_names)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}

void CounterVec::inc(const std::vector<std::string>& label_values, double by) {
  if (label_values.size() != label_names_.size()) {
    throw std::invalid_argument("metric " + name_ + ": wrong number of label values");
  }
  std::lock_guard<std::mutex> lock(mu_);
  values_[label_values] += by;
}

double CounterVec::get(const std::vector<std::string>& label_values) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = values_.find(label_values);
  return it == values_.end() ? 0 : it->second;
}

void CounterVec::write(TextWriter& w) const {
  w.family(name_, "counter", help_);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, v] : values_) w.sample(name_, zip(label_names_, values), v);
}

HistogramVec::HistogramVec(std::string name, std::string help, std::vector<std::string> label_names,
                           std::vector<double> bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      bounds_(std::move(bounds)) {}

void HistogramVec::observe(const std::vector<std::string>& label_values, double v) {
  if (label_values.size() != label_names_.size()) {
    throw std::invalid_argument("metric " + name_ + ": wrong number of label values");
  }
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = series_[label_values];
  if (s.counts.empty()) s.counts.assign(bounds_.size(), 0);
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (v <= bounds_[i]) {
      ++s.counts[i];
      break;
    }
  }
  ++s.count;
  s.sum += v;
}

void HistogramVec::write(TextWriter& w) const {
  w.family(name_, "histogram", help_);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, s] : series_) {
    Labels base = zip(label_names_, values);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += s.counts[i];
      Labels l = base;
      l.emplace_back("le", TextWriter::format_value(bounds_[i]));
      w.sample(name_ + "_bucket", l, static_cast<double>(cumulative));
    }
    Labels inf = base;
    inf.emplace_back("le", "+Inf");
    w.sample(name_ + "_bucket", inf, static_cast<double>(s.count));
    w.sample(name_ + "_sum", base, s.sum);
    w.sample(name_ + "_count", base, static_cast<double>(s.count));
  }
}

CounterVec& Registry::counter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  counters_.push_back(std::make_unique<CounterVec>(name, help, std::move(label_names)));
  return *counters_.back();
}

HistogramVec& Registry::histogram(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names,
                                  std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  histograms_.push_back(
      std::make_unique<HistogramVec>(name, help, std::move(label_names), std::move(bounds)));
  return *histograms_.back();
}

void Registry::collector(std::function<void(TextWriter&)> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.push_back(std::move(fn));
}

std::string Registry::render() const {
  TextWriter w;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& c : counters_) c->write(w);
  for (const auto& h : histograms_) h->write(w);
  for (const auto& fn : collectors_) fn(w);
  return w.str();
}

namespace {
std::mutex g_sandbox_mu;
SandboxStatsProvider g_sandbox_provider;
}  // namespace

void set_sandbox_stats_provider(SandboxStatsProvider provider) {
  std::lock_guard<std::mutex> lock(g_sandbox_mu);
  g_sandbox_provider = std::move(provider);
}

bool has_sandbox_stats_provider() {
  std::lock_guard<std::mutex> lock(g_sandbox_mu);
  return static_cast<bool>(g_sandbox_provider);
}

std::vector<SandboxPluginStats> sandbox_stats() {
  SandboxStatsProvider p;
  {
    std::lock_guard<std::mutex> lock(g_sandbox_mu);
    p = g_sandbox_provider;
  }
  return p ? p() : std::vector<SandboxPluginStats>{};
}

}  // namespace jr::ops
