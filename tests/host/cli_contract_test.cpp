// The CLI's documented contract, driven through the real `runner` binary against a real
// PostgreSQL (issue 17): the README's exit codes for every command group, bad input refused
// before the database (exit 2, the offending value, JSONL line numbers, nothing inserted),
// `--payload-file -` and its progress on a terminal, `runner jobs cancel`, and the runner of
// each attempt in `runner status`. Terminals are real pseudo-terminals (forkpty).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "runner_fixture.hpp"

namespace fs = std::filesystem;
using jrtest::run_runner;
using jrtest::RunnerProcess;
using jrtest::RunResult;

namespace {

const char* kDownUrl = "postgresql://app@127.0.0.1:1/jobs?connect_timeout=1";

// Runs the runner with `input` on standard input: through a pipe, or with `tty` on a
// pseudo-terminal that is its stdin and stderr (stdout then goes to `stdout_file`, or
// /dev/null). Returns the exit code, stdout (pipe mode) and what the terminal showed / stderr.
RunResult run_io(const std::vector<std::string>& args,
                 const std::map<std::string, std::string>& env, const std::string& input, bool tty,
                 const std::string& stdout_file = "/dev/null") {
  jrtest::TempDir dir;
  std::string out_path = dir.path() + "/out", err_path = dir.path() + "/err";
  std::vector<std::string> argv_s = {jrtest::runner_path()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  int master = -1, in_pipe[2] = {-1, -1};
  pid_t pid;
  if (tty) {
    pid = forkpty(&master, nullptr, nullptr, nullptr);
  } else {
    if (pipe(in_pipe) != 0) return {};
    pid = fork();
  }
  if (pid == 0) {
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    if (tty) {
      int fd = open(stdout_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
    } else {
      dup2(in_pipe[0], STDIN_FILENO);
      close(in_pipe[1]);
      int o = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int e = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(o, STDOUT_FILENO);
      dup2(e, STDERR_FILENO);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  RunResult r;
  if (!tty) {
    close(in_pipe[0]);
    size_t done = 0;
    while (done < input.size()) {
      ssize_t n = write(in_pipe[1], input.data() + done, input.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    close(in_pipe[1]);
  } else {
    if (!input.empty()) {
      EXPECT_EQ(write(master, input.data(), input.size()), static_cast<ssize_t>(input.size()));
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    char buf[4096];
    for (;;) {
      pollfd p{master, POLLIN, 0};
      if (poll(&p, 1, 200) > 0) {
        ssize_t n = read(master, buf, sizeof buf);
        if (n <= 0) break;  // EIO: the child closed the terminal
        r.err.append(buf, static_cast<size_t>(n));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        break;
      }
    }
    close(master);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (!tty) {
    std::ifstream o(out_path), e(err_path);
    std::stringstream so, se;
    so << o.rdbuf();
    se << e.rdbuf();
    r.out = so.str();
    r.err = se.str();
  }
  return r;
}

class CliContract : public jrtest::RunnerFixture {
 protected:
  std::map<std::string, std::string> down_ = {{"DATABASE_URL", kDownUrl}};
};

// README: 0 success; 1 runtime failure (database, plugin, I/O); 2 bad usage, bad configuration
// or bad input (nothing was changed); 3 no such job (status, cancel, retry, replay, dlq show),
// batch (batch status), limit (limit rm) or approval (plugins approvals rm). Each documented code
// of each command, driven once (a command's 0 elsewhere is named where it is).
TEST_F(CliContract, ExitCodesMatchTheReadmeForEveryCommandGroup) {
  // A waiting job, a completed one and a dead letter.
  int64_t waiting = enqueue({"enqueue", "echo", "--payload", "{}", "--delay", "1h"});
  q("INSERT INTO jr_jobs_done (id, queue, kind, payload, state, priority, attempt, created_at) "
    "VALUES (900001, 'default', 'echo', '{}', 'completed', 0, 1, now()), "
    "(900002, 'default', 'echo', '{}', 'discarded', 0, 1, now()), "
    "(900003, 'default', 'echo', '{}', 'discarded', 0, 1, now())");
  std::string w = std::to_string(waiting);
  std::string empty = dir_.path() + "/empty";
  fs::create_directories(empty);
  std::string a_file = dir_.path() + "/a_file";
  std::ofstream(a_file) << "x";
  std::string data_dir = dir_.path() + "/managed";
  std::string echo_dir = plugin_dir_with({jrtest::echo_so()});
  std::string batch = nlohmann::json::parse(q(
      "SELECT jr_batch_enqueue('echo', '[{}]', '{\"delay_seconds\": 3600}')"))["batch_id"]
                          .dump();
  env_["RUNNER_APPROVALS"] = dir_.path() + "/approvals.json";  // not the machine's own
  struct Case {
    std::vector<std::string> args;
    int code;
    bool db_down = false;
  };
  std::vector<Case> cases = {
      // worker (the default command)
      {{"worker", "--dsn", "X"}, 2},
      {{"--concurrency", "0"}, 2},
      {{"--plugins", empty}, 2},                               // no job kind to serve
      {{"--plugins", jrtest::test_plugin_dir() + "/dup"}, 1},  // two plugins, one kind
      // enqueue
      {{"enqueue", "echo", "--payload", "{}"}, 0},
      {{"enqueue"}, 2},
      {{"enqueue", "echo", "--payload", "{}", "--concurrency", "5"}, 2},
      {{"enqueue", "echo", "--payload", "{}", "--depends-on", "424242"}, 2},
      {{"enqueue", "echo", "--payload", "{}"}, 1, true},
      // status
      {{"status", w}, 0},
      {{"status", "abc"}, 2},
      {{"status", "99999999999999999999"}, 2},
      {{"status", "424242"}, 3},
      {{"status", w}, 1, true},
      // jobs
      {{"jobs", "ls"}, 0},
      {{"jobs", "ls", "--state", "bogus"}, 2},
      {{"jobs", "ls"}, 1, true},
      {{"jobs", "cancel", "--queue", "nothing-here"}, 0},
      {{"jobs", "cancel", "--queue", "default"}, 2},  // jobs would be cancelled: --yes missing
      {{"jobs", "cancel"}, 2},
      {{"jobs", "cancel", "--queue", "default", "--yes"}, 1, true},
      // cancel
      {{"cancel", "900001"}, 1},  // already finished
      {{"cancel", "x1"}, 2},
      {{"cancel", "424242"}, 3},
      {{"cancel", w}, 1, true},
      {{"cancel", w}, 0},
      // retry
      {{"retry", "900003"}, 0},
      {{"retry", "900001"}, 1},  // completed: cannot be retried
      {{"retry", "0"}, 2},
      {{"retry", "424242"}, 3},
      {{"retry", "900002"}, 1, true},
      // replay
      {{"replay", "900001"}, 0},
      {{"replay", "abc"}, 2},
      {{"replay", "424242"}, 3},
      {{"replay", "900001"}, 1, true},
      // batch
      {{"batch", "status", batch}, 0},
      {{"batch", "status", "x"}, 2},
      {{"batch"}, 2},
      {{"batch", "status", "424242"}, 3},
      {{"batch", "status", batch}, 1, true},
      // ui (its 0, a clean SIGTERM, is below)
      {{"ui"}, 2},  // --http is required
      {{"ui", "--http", "127.0.0.1:0"}, 1, true},
      // dlq
      {{"dlq", "ls"}, 0},
      {{"dlq", "show", "900002"}, 0},
      {{"dlq", "show", "424242"}, 3},
      {{"dlq", "replay"}, 2},
      {{"dlq", "purge"}, 2},
      {{"dlq", "ls", "--since", "yesterday"}, 2},
      {{"dlq", "ls"}, 1, true},
      // queue
      {{"queue", "pause", "q1"}, 0},
      {{"queue", "ls"}, 0},
      {{"queue", "pause"}, 2},
      {{"queue", "resume", "q1"}, 1, true},
      // limit
      {{"limit", "set", "--key", "queue:q1", "--rate", "5"}, 0},
      {{"limit", "set", "--key", "q*1", "--rate", "5"}, 2},  // q1 is a rate key
      {{"limit", "rm", "--key", "queue:none"}, 3},
      {{"limit", "ls"}, 1, true},
      // cron
      {{"cron", "ls"}, 0},
      {{"cron"}, 2},
      {{"cron", "ls"}, 1, true},
      // migrate
      {{"migrate"}, 0},
      {{"migrate", "now"}, 2},
      {{"migrate"}, 1, true},
      // info
      {{"info", "--json"}, 0},
      {{"info", "--kinds", "echo"}, 2},
      {{"info"}, 1, true},
      // db (the managed cluster; not started here)
      {{"db", "url", "--data-dir", data_dir}, 0},
      {{"db", "status", "--data-dir", data_dir}, 1},  // not running
      {{"db", "reboot"}, 2},
      // plugins
      {{"plugins", "ls", echo_dir}, 0},
      {{"plugins", "ls"}, 2},
      {{"plugins", "ls", jrtest::test_plugin_dir() + "/dup"}, 1},
      {{"plugins", "check", jrtest::echo_so()}, 0},
      {{"plugins", "check"}, 2},
      {{"plugins", "check", dir_.path() + "/missing.so"}, 1},
      {{"plugins", "approve", jrtest::echo_so()}, 2},  // no terminal to confirm on, no --yes
      {{"plugins", "approve", "--yes", jrtest::echo_so()}, 0},
      {{"plugins", "approve", dir_.path() + "/missing.so"}, 1},
      {{"plugins", "approvals", "ls"}, 0},
      {{"plugins", "approvals", "rm", "echo"}, 0},
      {{"plugins", "approvals", "rm", "echo"}, 3},  // nothing left to remove
      {{"plugins", "approvals", "bogus"}, 2},
      // new-plugin
      {{"new-plugin", "good_name", dir_.path() + "/scaffold"}, 0},
      {{"new-plugin", "9bad", dir_.path() + "/scaffold2"}, 2},
      {{"new-plugin", "good_name", a_file + "/sub"}, 1},  // cannot create a directory there
      // torture (its 0 is TortureRunExitsZero below)
      {{"torture", "--runners", "0"}, 2},
      {{"torture", "--jobs", "1"}, 1, true},
  };
  for (const auto& c : cases) {
    auto r = run_runner(c.args, c.db_down ? down_ : env_);
    std::string cmd;
    for (const auto& a : c.args) cmd += " " + a;
    EXPECT_EQ(r.exit_code, c.code) << "runner" << cmd << (c.db_down ? " (database down)" : "")
                                   << "\nstdout: " << r.out << "\nstderr: " << r.err;
  }
  // The worker's 0: a clean SIGTERM.
  RunnerProcess runner({"--plugins", echo_dir}, env_);
  ASSERT_TRUE(jrtest::wait_until([&] { return q("SELECT count(*) FROM jr_workers") == "1"; },
                                 std::chrono::seconds(30)))
      << runner.log();
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(30)), 0) << runner.log();
  // The dashboard-only process's 0: a clean SIGTERM once it listens.
  RunnerProcess ui({"ui", "--http", "127.0.0.1:0"}, env_);
  ASSERT_TRUE(jrtest::wait_until(
      [&] { return ui.log().find("http server listening") != std::string::npos; },
      std::chrono::seconds(30)))
      << ui.log();
  ui.signal(SIGTERM);
  EXPECT_EQ(ui.wait(std::chrono::seconds(30)), 0) << ui.log();
}

// SIGTERM is held from main's first line for the worker and the dashboard (their sigwait turns a
// stop at any moment of start-up into exit 0); every other command keeps the default action, so
// a long-running one such as `info --watch` still dies of it at once.
TEST_F(CliContract, OtherCommandsKeepTheDefaultSigterm) {
  RunnerProcess watch({"info", "--watch"}, env_);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // refreshing by now
  ASSERT_TRUE(watch.alive()) << watch.log();
  watch.signal(SIGTERM);
  EXPECT_EQ(watch.wait(std::chrono::seconds(10)), 128 + SIGTERM) << watch.log();
}

TEST_F(CliContract, TortureRunExitsZero) {
  auto r = run_runner({"torture", "--jobs", "20", "--runners", "1", "--kill-every", "0",
                       "--plugins", plugin_dir_with({jrtest::echo_so()})},
                      env_, std::chrono::seconds(120));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

// Usage errors are exit 2 with CLI11's message, never CLI11's own codes (109, 106, 105, 104),
// and a worker flag given to another command is an error, not silently ignored.
TEST_F(CliContract, UsageErrorsAreExitTwoAndWorkerFlagsApplyOnlyToTheWorker) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<Case> cases = {
      {{"worker", "--no-such-flag", "X"}, "The following arguments were not expected"},
      {{"enqueue"}, "kind is required"},
      {{"status", "abc"}, "'abc' is not a job id"},
      {{"status", "99999999999999999999"}, "'99999999999999999999' is not a job id"},
      {{"--concurrency", "0"}, "--concurrency: Value 0 not in range 1 to 4096"},
      {{"enqueue", "echo", "--payload", "{}", "--concurrency", "5"},
       "runner enqueue: --concurrency does not apply to this command"},
      {{"--http", "9090", "status", "1"}, "runner status: --http does not apply"},
      {{"jobs", "ls", "--plugins", "/tmp"}, "runner jobs: --plugins does not apply"},
      {{"info", "--worker-id", "x"}, "runner info: --worker-id does not apply"},
      {{"torture", "--kinds", "echo"}, "runner torture: --kinds does not apply"},
  };
  for (const auto& c : cases) {
    auto r = run_runner(c.args, env_);
    EXPECT_EQ(r.exit_code, 2) << c.args[0] << "\n" << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
  }
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs_all"), "0");
  // The flags other commands do use still work there.
  auto info = run_runner({"info", "--json", "--lease-seconds", "3"}, env_);
  EXPECT_EQ(info.exit_code, 0) << info.err;
  auto help = run_runner({"--help"}, env_);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--concurrency"), std::string::npos);
}

// Inputs only the database used to refuse (exit 1, "database error", no line number): refused
// first, with exit 2, the offending value, and nothing inserted.
TEST_F(CliContract, BadEnqueueInputIsRefusedBeforeTheDatabase) {
  std::string dir = dir_.path();
  auto file = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name, std::ios::binary) << text;
    return dir + "/" + name;
  };
  std::string nul_line = file("nul.jsonl", "{\"a\":1}\n\n{\"b\":\"x\\u0000y\"}\n{\"c\":3}\n");
  std::string array_line = file("array.jsonl", "{\"a\":1}\n[1,2]\n");
  std::string bad_utf8_line = file("utf8.jsonl", "{\"a\":1}\n{\"a\":2}\n{\"b\":\"\xff\"}\n");
  int64_t parent = 0;  // none exists
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> says;
  };
  std::vector<Case> cases = {
      {{"--run-at", "garbage"}, {"--run-at \"garbage\"", "ISO 8601"}},
      {{"--run-at", "2026-02-30T10:00:00Z"}, {"--run-at \"2026-02-30T10:00:00Z\""}},
      {{"--delay", "1e300s"}, {"--delay \"1e300s\"", "100 years"}},
      {{"--ttl", "9999999d"}, {"--ttl \"9999999d\"", "100 years"}},
      {{"--timeout", "0s"}, {"--timeout \"0s\"", "between 0.001"}},
      {{"--delay", "soon"}, {"--delay: invalid duration 'soon'"}},
      {{"--payload", R"({"a": "x\u0000y"})"}, {"--payload", "NUL", "\"a\""}},
      {{"--payload", "[1, 2]"}, {"--payload: must be a JSON object, got an array"}},
      {{"--payload", "\"text\""}, {"--payload: must be a JSON object, got a string"}},
      {{"--payload", "{}", "--queue", "q\xff\xfe"},
       {"--queue \"q", "not valid UTF-8 (byte 0xff at offset 1)"}},
      {{"--payload", "{}", "--queue", "tab\tbed"}, {"--queue", "control character"}},
      {{"--payload", "{}", "--depends-on", std::to_string(parent + 424242)},
       {"--depends-on: no job with id 424242"}},
      {{"--payload", "{}", "--depends-on", "99999999999999999999"},
       {"--depends-on: '99999999999999999999' is not a job id"}},
      {{"--payload", "{}", "--priority", "2000000"}, {"--priority \"2000000\"", "-1000000"}},
      {{"--payload", "{}", "--unique-key", std::string(1025, 'k')}, {"longer than 1024 bytes"}},
      {{"--payload", "{}", "--webhook", "ftp://x"}, {"--webhook", "http:// or https://"}},
      {{"--payload-file", nul_line}, {nul_line + ":3: the payload contains a NUL character"}},
      {{"--payload-file", array_line}, {array_line + ":2: the payload must be a JSON object"}},
      {{"--payload-file", bad_utf8_line}, {bad_utf8_line + ":3: the payload is not valid JSON"}},
      {{"--payload-file", dir}, {"--payload-file " + dir + " is a directory"}},
      {{"--payload-file", dir + "/missing.jsonl"}, {"cannot open", "No such file or directory"}},
  };
  for (auto c : cases) {
    std::vector<std::string> args = {"enqueue", "echo"};
    bool has_payload = false;
    for (const auto& a : c.args) has_payload = has_payload || a.rfind("--payload", 0) == 0;
    if (!has_payload) args.insert(args.end(), {"--payload", "{}"});
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = run_runner(args, env_);
    EXPECT_EQ(r.exit_code, 2) << c.args[0] << " " << c.args.back() << "\n" << r.err;
    for (const auto& s : c.says) EXPECT_NE(r.err.find(s), std::string::npos) << s << "\n" << r.err;
    EXPECT_NE(r.err.find("nothing was enqueued"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("database error"), std::string::npos) << r.err;
  }
  auto kind = run_runner({"enqueue", "echo evil", "--payload", "{}"}, env_);
  EXPECT_EQ(kind.exit_code, 2);
  EXPECT_NE(kind.err.find("KIND: must be 1 to 128 characters"), std::string::npos) << kind.err;
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs_all"), "0");
  // A time PostgreSQL reads, in the forms `runner status` prints, is accepted.
  auto ok = run_runner(
      {"enqueue", "echo", "--payload", "{}", "--run-at", "2030-01-02T03:04:05.123456+00:00"}, env_);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(q("SELECT run_at = '2030-01-02T03:04:05.123456Z' FROM jr_jobs"), "t");
}

TEST_F(CliContract, PayloadFileDashReadsStandardInput) {
  auto r = run_io({"enqueue", "echo", "--payload-file", "-", "--queue", "in"}, env_,
                  "{\"n\":1}\n\n{\"n\":2}\n{\"n\":3}", false);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream ids(r.out);
  std::vector<int64_t> got;
  for (std::string line; std::getline(ids, line);) got.push_back(std::stoll(line));
  ASSERT_EQ(got.size(), 3u) << r.out;
  EXPECT_EQ(q("SELECT string_agg(payload->>'n', ',' ORDER BY id) FROM jr_jobs WHERE queue = 'in'"),
            "1,2,3");
  auto bad = run_io({"enqueue", "echo", "--payload-file", "-"}, env_, "{\"n\":1}\n7\n", false);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("<stdin>:2: the payload must be a JSON object, got an integer"),
            std::string::npos)
      << bad.err;
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs"), "3");
}

// A large file on a terminal shows rows read and rows/s; off a terminal, nothing is added.
TEST_F(CliContract, LargePayloadFileShowsProgressOnATerminal) {
  std::string file = dir_.path() + "/big.jsonl";
  const int n = 60000;
  {
    std::ofstream out(file);
    for (int i = 0; i < n; ++i) out << "{\"i\":" << i << ",\"pad\":\"0123456789\"}\n";
  }
  ASSERT_GT(fs::file_size(file), 1u << 20);
  std::string ids = dir_.path() + "/ids.txt";
  auto r = run_io({"enqueue", "echo", "--payload-file", file}, env_, "", true, ids);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(std::to_string(n) + " rows read in "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rows/s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(n) + " jobs inserted in "), std::string::npos) << r.err;
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs"), n);
  auto plain = run_runner({"enqueue", "echo", "--payload-file", file}, env_);
  ASSERT_EQ(plain.exit_code, 0);
  EXPECT_EQ(plain.err.find("rows read"), std::string::npos) << plain.err;
  // A small file shows nothing, even on a terminal.
  std::string small = dir_.path() + "/small.jsonl";
  std::ofstream(small) << "{}\n{}\n";
  auto s = run_io({"enqueue", "echo", "--payload-file", small}, env_, "", true);
  EXPECT_EQ(s.exit_code, 0);
  EXPECT_EQ(s.err.find("rows read"), std::string::npos) << s.err;
}

TEST_F(CliContract, JobsCancelClearsAQueueOnlyWhenConfirmed) {
  enqueue_many("echo", 4, "{}", {"--queue", "q"});
  enqueue_many("other", 2, "{}", {"--queue", "q"});
  int64_t later = enqueue({"enqueue", "echo", "--payload", "{}", "--queue", "q", "--delay", "1h"});
  enqueue_many("echo", 3, "{}", {"--queue", "keep"});
  // A running job is left to `runner cancel ID`.
  int64_t running = enqueue({"enqueue", "echo", "--payload", "{}", "--queue", "q"});
  q("UPDATE jr_jobs SET state = 'running', attempt = 1, lease_owner = 'someone', "
    "lease_expires_at = now() + interval '1 hour' WHERE id = " +
    std::to_string(running));
  auto waiting_in = [&](const std::string& queue) {
    return count("SELECT count(*) FROM jr_jobs WHERE state <> 'running' AND queue = '" + queue +
                 "'");
  };
  // Without --yes and without a terminal: the count, exit 2, nothing done.
  auto r = run_runner({"jobs", "cancel", "--queue", "q"}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("7 job(s) in queue 'q' would be cancelled; add --yes"), std::string::npos)
      << r.err;
  EXPECT_EQ(waiting_in("q"), 7);
  r = run_runner({"jobs", "cancel", "--queue", "q", "--state", "running", "--yes"}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("runner cancel ID"), std::string::npos) << r.err;
  // One kind, one state, then the rest.
  r = run_runner({"jobs", "cancel", "--queue", "q", "--kind", "other", "--yes"}, env_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "2 job(s) cancelled in queue 'q' of kind 'other'\n");
  r = run_runner({"jobs", "cancel", "--queue", "q", "--state", "scheduled", "--yes"}, env_);
  EXPECT_EQ(r.out, "1 job(s) cancelled in queue 'q' in state scheduled\n");
  EXPECT_EQ(q("SELECT state FROM jr_jobs_all WHERE id = " + std::to_string(later)), "cancelled");
  // On a terminal it asks: "n" changes nothing (exit 2), "y" cancels.
  r = run_io({"jobs", "cancel", "--queue", "q"}, env_, "n\n", true);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("Cancel 4 job(s) in queue 'q'? [y/N]"), std::string::npos) << r.err;
  EXPECT_EQ(waiting_in("q"), 4);
  std::string out = dir_.path() + "/cancel.out";
  r = run_io({"jobs", "cancel", "--queue", "q"}, env_, "y\n", true, out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "4 job(s) cancelled in queue 'q'");
  EXPECT_EQ(waiting_in("q"), 0);
  EXPECT_EQ(waiting_in("keep"), 3);
  EXPECT_EQ(q("SELECT state FROM jr_jobs WHERE id = " + std::to_string(running)), "running");
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_done WHERE state = 'cancelled' AND queue = 'q' "
                  "AND errors->-1->>'kind' = 'cancelled'"),
            7);
}

// Which runner (worker id and host) ran each attempt, kept after the job finished, and the
// timeout of a finished job (jr_jobs_all showed NULL).
TEST_F(CliContract, StatusShowsTheRunnerOfEachAttemptAndTheTimeout) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string plugins = plugin_dir_with({jrtest::echo_so()});
  int64_t id = enqueue({"enqueue", "echo", "--payload", R"({"fail_attempts": 1})",
                        "--retry-schedule", "3600", "--timeout", "5m"});
  {
    RunnerProcess a({"--plugins", plugins, "--worker-id", "runner-a"}, env_);
    ASSERT_TRUE(wait_state(id, "retryable", std::chrono::seconds(30))) << a.log();
    a.signal(SIGTERM);
    ASSERT_EQ(a.wait(std::chrono::seconds(30)), 0) << a.log();
  }
  ASSERT_EQ(run_runner({"retry", std::to_string(id)}, env_).exit_code, 0);
  // A second job whose first attempt's runner vanished: rescued with the lease owner named.
  int64_t lost = enqueue({"enqueue", "echo", "--payload", R"({"lost": 1})"});
  q("INSERT INTO jr_workers (id, host, pid, kinds, queues) VALUES ('ghost', 'elsewhere', 1, "
    "'{echo}', '{}')");
  q("UPDATE jr_jobs SET state = 'running', attempt = 1, lease_owner = 'ghost', "
    "lease_expires_at = now() - interval '1 second' WHERE id = " +
    std::to_string(lost));
  RunnerProcess b({"--plugins", plugins, "--worker-id", "runner-b", "--rescue-interval", "200ms"},
                  env_);
  ASSERT_TRUE(wait_state(id, "completed", std::chrono::seconds(30))) << b.log();
  ASSERT_TRUE(wait_state(lost, "completed", std::chrono::seconds(30))) << b.log();
  auto s = status(id);
  nlohmann::json expected = nlohmann::json::parse(R"([
    {"attempt": 1, "worker_id": "runner-a", "outcome": "error"},
    {"attempt": 2, "worker_id": "runner-b", "outcome": "completed"}])");
  for (auto& e : expected) e["host"] = host;
  EXPECT_EQ(s["runs"], expected) << s.dump(2);
  EXPECT_EQ(s["timeout_ms"], 300000) << s.dump(2);
  auto l = status(lost);
  ASSERT_EQ(l["runs"].size(), 2u) << l.dump(2);
  EXPECT_EQ(l["runs"][0], nlohmann::json::parse(R"({"attempt": 1, "worker_id": "ghost",
      "host": "elsewhere", "outcome": "lease_lost"})"));
  EXPECT_EQ(l["runs"][1]["worker_id"], "runner-b");
  auto text = run_runner({"status", std::to_string(id)}, env_);
  EXPECT_NE(text.out.find("attempt 1 on runner-a (host " + std::string(host) + "): error"),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("attempt 2 on runner-b (host " + std::string(host) + "): completed"),
            std::string::npos)
      << text.out;
  b.signal(SIGTERM);
  EXPECT_EQ(b.wait(std::chrono::seconds(30)), 0);
}

// A TCP port on 127.0.0.1 that was free a moment ago (for flags that take a fixed port).
int unused_loopback_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

// Reproq's worker flags and verbs (--dsn, WORKER_ID, --heartbeat-seconds,
// --reclaim-interval-seconds, --metrics-port, replay --id) work unchanged (issue 22,
// docs/migrating.md).
TEST_F(CliContract, ReproqFlagsAndReplayWorkUnchanged) {
  std::string plugins = plugin_dir_with({jrtest::echo_so()});
  // A job that outlives its 3 s lease twice over: only the 1 s heartbeat keeps it.
  int64_t id = enqueue({"enqueue", "echo", "--payload", R"({"sleep_ms": 6500, "n": 7})", "--queue",
                        "q7", "--priority", "3", "--max-attempts", "4", "--timeout", "90s",
                        "--retry-schedule", "5,10", "--lock-key", "acct:1"});
  int port = unused_loopback_port();
  ASSERT_GT(port, 0);
  std::map<std::string, std::string> env = {{"WORKER_ID", "reproq-1"}};
  RunnerProcess r({"worker", "--dsn", url_, "--plugins", plugins, "--queues", "q7",
                   "--lease-seconds", "3", "--heartbeat-seconds", "1", "--reclaim-interval-seconds",
                   "1", "--metrics-port", std::to_string(port)},
                  env);
  ASSERT_TRUE(wait_state(id, "completed", std::chrono::seconds(60))) << r.log();
  auto s = status(id);
  ASSERT_EQ(s["runs"].size(), 1u) << s.dump(2);  // never lost its lease
  EXPECT_EQ(s["runs"][0]["worker_id"], "reproq-1") << s.dump(2);
  EXPECT_TRUE(std::regex_search(
      r.log(), std::regex("\"msg\":\"http server listening\".*\"port\":" + std::to_string(port))))
      << r.log();
  // replay (positional or --id): a new job like the completed one, which runs too.
  auto rp = run_runner({"replay", "--id", std::to_string(id)}, {{"DATABASE_URL", url_}});
  ASSERT_EQ(rp.exit_code, 0) << rp.err;
  int64_t again = std::stoll(rp.out);
  EXPECT_NE(again, id);
  auto a = status(again);
  for (const char* k : {"kind", "queue", "payload", "priority", "max_attempts", "timeout_ms"}) {
    EXPECT_EQ(a[k], s[k]) << k << "\n" << a.dump(2);
  }
  EXPECT_EQ(q("SELECT array_to_string(retry_schedule, ',') || ' ' || lock_key FROM jr_jobs "
              "WHERE id = " +
              std::to_string(again)),
            "5,10 acct:1");
  ASSERT_TRUE(wait_state(again, "completed", std::chrono::seconds(60))) << r.log();
  EXPECT_EQ(status(id)["state"], "completed");  // the original is untouched
  EXPECT_EQ(run_runner({"replay", "999999999"}, env_).exit_code, 3);
  r.signal(SIGTERM);
  EXPECT_EQ(r.wait(std::chrono::seconds(30)), 0) << r.log();
  // What has no counterpart is refused, not ignored.
  auto zero = run_runner({"--plugins", plugins, "--reclaim-interval-seconds", "0"}, env_);
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.err.find("is not supported"), std::string::npos) << zero.err;
  auto both = run_runner({"--plugins", plugins, "--metrics-port", "9", "--http", "9"}, env_);
  EXPECT_EQ(both.exit_code, 2) << both.err;
  auto hb =
      run_runner({"--plugins", plugins, "--lease-seconds", "3", "--heartbeat-seconds", "3"}, env_);
  EXPECT_EQ(hb.exit_code, 2);
  EXPECT_NE(hb.err.find("heartbeat_interval"), std::string::npos) << hb.err;
}

// The seeds' own environment variables are read as documented aliases: a seed deployment's
// DB_* parts, RQ_QUEUE, WORKER_CONCURRENCY, WORKER_MAX_RETRIES work without a DATABASE_URL.
TEST_F(CliContract, SeedEnvironmentVariablesAreAliases) {
  PQconninfoOption* opts = PQconninfoParse(url_.c_str(), nullptr);
  ASSERT_NE(opts, nullptr);
  std::map<std::string, std::string> parts;
  for (auto* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) parts[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  std::map<std::string, std::string> seed = {
      {"DB_HOST", parts["host"]},    {"DB_PORT", parts["port"]},
      {"DB_USER", parts["user"]},    {"POSTGRES_PASSWORD", parts["password"]},
      {"DB_NAME", parts["dbname"]},  {"RQ_QUEUE", "domain_checks"},
      {"WORKER_CONCURRENCY", "2"},   {"WORKER_MAX_RETRIES", "2"},
      {"WORKER_POLL_INTERVAL", "5s"}};
  // `runner enqueue` reaches the same database through the parts.
  auto e = run_runner({"enqueue", "echo", "--queue", "domain_checks", "--retry-schedule", "0",
                       "--payload", R"({"fail": "retryable"})"},
                      seed);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  int64_t failing = std::stoll(e.out);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs WHERE id = " + std::to_string(failing)), 1);
  int64_t elsewhere = enqueue({"enqueue", "echo", "--queue", "other", "--payload", "{}"});
  std::string plugins = plugin_dir_with({jrtest::echo_so()});
  RunnerProcess r({"--plugins", plugins}, seed);
  // WORKER_MAX_RETRIES=2: three attempts, then the dead letter queue.
  ASSERT_TRUE(wait_state(failing, "discarded", std::chrono::seconds(60))) << r.log();
  EXPECT_EQ(status(failing)["attempt"], 3);
  EXPECT_NE(r.log().find("seed environment variables read as aliases"), std::string::npos);
  EXPECT_NE(r.log().find("RQ_QUEUE"), std::string::npos) << r.log();
  EXPECT_EQ(q("SELECT array_to_string(queues, ',') FROM jr_workers LIMIT 1"), "domain_checks");
  r.signal(SIGTERM);
  EXPECT_EQ(r.wait(std::chrono::seconds(30)), 0) << r.log();
  // RQ_QUEUE restricted the runner to its queue.
  EXPECT_EQ(status(elsewhere)["state"], "available");
  // RUNNER_* wins over an alias; a bad alias value names the variable.
  auto seed_bad = seed;
  seed_bad["WORKER_CONCURRENCY"] = "many";
  auto bad = run_runner({"--plugins", plugins}, seed_bad);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("WORKER_CONCURRENCY"), std::string::npos) << bad.err;
}

}  // namespace
