// The wire protocol between the host and a jr-worker process: length-prefixed frames on a
// socketpair. A frame is an 8-byte header {u32 payload length, u16 type, u16 zero} and a payload
// of at most `max_frame` bytes; anything else is a protocol error and the host kills the worker.
// Payloads are little-endian fixed fields and u32-length-prefixed strings (Encoder/Decoder);
// Init and Hello carry JSON text.
//
// Per job: one Job frame in (its last field `tp`: the attempt's W3C traceparent, "" or 55
// bytes, for jr.trace.v1), one Done frame out; Log/Progress/Enqueue/ParentResults frames from
// the worker (and an EnqueueReply / ParentResultsReply back) only when the plugin calls those
// host functions. Cancellation does not travel as a frame: the host sets a word in a shared page
// the worker polls for free.
//
// Threading: an Encoder/FrameReader belongs to one thread at a time; the caller serialises
// writes on one socket.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace jr::sandbox::proto {

constexpr uint32_t kDefaultMaxFrame = 16u << 20;  // 16 MiB
constexpr int kWorkerFd = 3;                      // the worker's end of the socketpair
constexpr int kSharedFd = 4;                      // memfd with the SharedPage
// The plugin file, opened by the host: the worker loads /proc/self/fd/5, so it needs no search
// permission on the plugin's directory (a root host's 0700 dirs are closed to `nobody`).
constexpr int kPluginFd = 5;
// How long a reader polls for the other side's frame before it sleeps
// (FrameReader::set_spin_us; the host's readers, and workers as SharedPage::spin_us allows).
// Catching the answer awake saves the wake-ups of an idle CPU (about 30 us per job on this VM).
constexpr int kSpinUs = 20;

enum class Type : uint16_t {
  // host -> worker
  init = 1,           // JSON: plugin path, policy, plugin config, mode
  job = 2,            // seq, id, attempt, max_attempts, deadline_ms, kind, queue, payload, tp
  enqueue_reply = 3,  // req, id (-1 = refused)
  shutdown = 4,       // call the plugin's shutdown and exit 0
  idle = 5,           // seq: call the plugin's idle hook
  net_guard_ack = 6,  // u8 ok: the host took the notification listener (or could not)
  parents_reply = 7,  // req, i32 status (0 = ok), page: parent results (JSON, < max_frame)
  // worker -> host
  hello = 64,      // JSON: ok, error, layers, warnings, descriptor
  log = 65,        // seq, level, msg
  progress = 66,   // seq, percent, has_step, step
  enqueue = 67,    // seq, req, kind, payload, options
  done = 68,       // seq, status, flags, snooze, cpu_us, maxrss_kb, result_size, result, error
  net_guard = 69,  // u32 fd: the seccomp listener to take with pidfd_getfd (network loopback)
  parents = 70,    // seq, req, u32 offset: a page of the job's parents' results
};

// Done flags.
constexpr uint32_t kDoneHasResult = 1;
constexpr uint32_t kDoneOom = 2;     // an allocation failed during the job (RLIMIT_AS)
constexpr uint32_t kDoneTooBig = 4;  // the result exceeded the frame limit and was dropped
// The job did not start: its frame was marked in cancel_seq/cancel_ahead before the worker
// took it up (a cancel, or the host calling back what it sent ahead to a worker due for
// replacement). The status is JR_CANCELLED.
constexpr uint32_t kDoneSkipped = 8;

// Jobs handed to a worker ahead of the running one (a batch) at most; see cancel_ahead.
constexpr size_t kCancelAheadSlots = 32;

// The page shared by host and worker (memfd). `cancel_seq` = the seq of a job the host wants
// stopped; the worker's is_cancelled() compares it with the running job's seq. `cancel_ahead`:
// jobs cancelled while their frames wait behind the running one, slot seq % kCancelAheadSlots
// holding the seq (at most kCancelAheadSlots are outstanding, so slots are never shared).
struct SharedPage {
  alignas(64) uint64_t cancel_seq;
  alignas(64) uint64_t cancel_ahead[kCancelAheadSlots];
  // Microseconds the worker may poll for its next frame before sleeping: the host sets it with
  // each job, non-zero only while fewer exchanges than CPUs are in flight (spinning workers
  // would otherwise take the CPU from the ones with work).
  alignas(64) uint32_t spin_us;
};
static_assert(sizeof(SharedPage) <= 4096, "the shared page is one page (worker_process.cpp)");

struct Header {
  uint32_t len;
  uint16_t type;
  uint16_t reserved;
};
static_assert(sizeof(Header) == 8);

// Builds one frame in a reusable buffer: begin(), fields, then data()/size().
class Encoder {
 public:
  void begin(Type t) {
    buf_.resize(sizeof(Header));
    Header h{0, static_cast<uint16_t>(t), 0};
    std::memcpy(buf_.data(), &h, sizeof h);
  }
  template <class T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    size_t n = buf_.size();
    buf_.resize(n + sizeof(T));
    std::memcpy(buf_.data() + n, &v, sizeof(T));
  }
  void str(std::string_view s) {
    put<uint32_t>(static_cast<uint32_t>(s.size()));
    buf_.append(s.data(), s.size());
  }
  // Patches the length; returns the whole frame.
  std::string_view finish() {
    uint32_t len = static_cast<uint32_t>(buf_.size() - sizeof(Header));
    std::memcpy(buf_.data(), &len, sizeof len);
    return buf_;
  }
  size_t payload_size() const { return buf_.size() - sizeof(Header); }

 private:
  std::string buf_;
};

// Reads fields of one payload; any overrun sets !ok() and yields zeros.
class Decoder {
 public:
  explicit Decoder(std::string_view payload) : p_(payload.data()), end_(p_ + payload.size()) {}
  template <class T>
  T get() {
    T v{};
    if (static_cast<size_t>(end_ - p_) < sizeof(T)) {
      ok_ = false;
      p_ = end_;
      return v;
    }
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  std::string_view str() {
    uint32_t n = get<uint32_t>();
    if (!ok_ || static_cast<size_t>(end_ - p_) < n) {
      ok_ = false;
      p_ = end_;
      return {};
    }
    std::string_view s(p_, n);
    p_ += n;
    return s;
  }
  bool ok() const { return ok_; }
  bool at_end() const { return p_ == end_; }

 private:
  const char* p_;
  const char* end_;
  bool ok_ = true;
};

struct Frame {
  Type type{};
  std::string_view payload;  // valid until the next FrameReader call
};

// Buffered frame reader over a socket. One read() pulls as much as is available, so a burst of
// small frames costs one system call.
class FrameReader {
 public:
  enum class Result { frame, need_more, eof, too_big, error };

  explicit FrameReader(uint32_t max_frame = kDefaultMaxFrame) : max_(max_frame) {
    buf_.resize(64 * 1024);
  }
  // Extracts a buffered frame without reading; need_more when none is complete.
  Result parse(Frame& out);
  // One read(2) into the buffer (blocking or not, as the fd is). eof on end of stream, error
  // with errno set (EAGAIN included) when nothing was read.
  Result fill(int fd);
  // parse(), then fill() until a frame is complete (for blocking fds).
  Result next_blocking(int fd, Frame& out);
  uint32_t last_len() const { return last_len_; }
  void reset() { start_ = end_ = 0; }
  // Before fill() blocks, poll for up to this long, yielding the CPU between polls. The other
  // side usually answers within microseconds (a job's Done, the next Job): catching it awake
  // saves two sleep/wake-ups per job, which on an idle VM cost about 25 us together.
  void set_spin_us(int us) { spin_us_ = us; }

 private:
  uint32_t max_;
  int spin_us_ = 0;
  std::vector<char> buf_;
  size_t start_ = 0;
  size_t end_ = 0;
  uint32_t last_len_ = 0;
};

// Writes all of `data`; retries on EINTR. For blocking fds. Returns false on error (errno set).
bool write_all(int fd, std::string_view data);
// Same on a non-blocking fd, waiting at most until `deadline_steady_ms` (0 = 10 s from now).
bool write_all_until(int fd, std::string_view data, int64_t deadline_steady_ms);

int64_t steady_ms();

}  // namespace jr::sandbox::proto
