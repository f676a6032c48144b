// plugins/exec through the real runner, sandboxed (the default isolation, as root in CI): Python
// handlers (tests/plugins/exec/handlers, sdk/python/jobrunner_handler.py) beside the healthy echo
// plugin (RedTeamFixture checks that every echo job completes, no lease is lost, the runner
// exits cleanly and no worker outlives it).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "redteam.hpp"

namespace {

using namespace std::chrono_literals;
using jrtest::RedTeamFixture;
using jrtest::wait_until;

std::string handlers_dir() {
  return std::string(JR_TEST_SOURCE_DIR) + "/tests/plugins/exec/handlers";
}
std::string sdk_dir() { return std::string(JR_TEST_SOURCE_DIR) + "/sdk/python"; }
std::string exec_so() { return jrtest::plugin_dir() + "/libjr_exec.so"; }

// How many plain jobs the load test runs (JR_EXEC_JOBS; the issue's 10,000 is run by hand: see
// docs/exec.md, "Tested").
int load_jobs() {
  const char* v = std::getenv("JR_EXEC_JOBS");
  return v != nullptr ? std::atoi(v) : 1000;
}

std::string kind_toml(const std::string& kind, const std::string& script, int workers,
                      const std::string& extra = "") {
  return "[[plugins.exec.kinds]]\nkind = \"" + kind + "\"\ncommand = [\"/usr/bin/python3\", \"" +
         handlers_dir() + "/" + script + "\"]\nenv = { PYTHONPATH = \"" + sdk_dir() +
         "\", PYTHONDONTWRITEBYTECODE = \"1\" }\nworkers = " + std::to_string(workers) + "\n" +
         extra;
}

std::string sandbox_toml() {
  return "[plugins.exec.sandbox]\nreadable = [\"" + handlers_dir() + "\", \"" + sdk_dir() + "\"]\n";
}

// Python processes running `script` (the exec plugin's warm children).
std::vector<pid_t> handler_pids(const std::string& script) {
  return jrtest::processes_where([&](const std::string& cmd) {
    return cmd.rfind("/usr/bin/python3", 0) == 0 && cmd.find(script) != std::string::npos;
  });
}

class ExecTest : public RedTeamFixture {
 protected:
  std::string state(int64_t id) {
    return q("SELECT state FROM jr_jobs_all WHERE id = " + std::to_string(id));
  }
  nlohmann::json result(int64_t id) {
    std::string r = q("SELECT result FROM jr_jobs_done WHERE id = " + std::to_string(id));
    return r.empty() ? nlohmann::json() : nlohmann::json::parse(r);
  }
  std::string errors(int64_t id) {
    return q("SELECT errors::text FROM jr_jobs_all WHERE id = " + std::to_string(id));
  }
  // The error kind of the job's first failed attempt.
  std::string first_kind(int64_t id) {
    return q("SELECT errors->0->>'kind' FROM jr_jobs_all WHERE id = " + std::to_string(id));
  }
  int64_t enqueue_one(const std::string& kind, const nlohmann::json& payload,
                      const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"enqueue", kind, "--payload", payload.dump()};
    args.insert(args.end(), extra.begin(), extra.end());
    return enqueue(args);
  }
  // The runner's log without the per-job lines (for failure messages).
  std::string interesting_log() {
    std::istringstream in(runner_->log());
    std::string out;
    for (std::string line; std::getline(in, line);) {
      if (line.find("\"job completed\"") != std::string::npos ||
          line.find("\"job started\"") != std::string::npos) {
        continue;
      }
      out += line.substr(0, 2000) + "\n";
    }
    return out.size() > 30000 ? out.substr(out.size() - 30000) : out;
  }
  bool all_finished(const std::vector<int64_t>& ids, std::chrono::milliseconds limit) {
    std::string sql = "SELECT count(*) FROM jr_jobs_done WHERE id = ANY('{" + join_ids(ids) + "}')";
    return wait_until([&] { return count(sql) == static_cast<int64_t>(ids.size()); }, limit);
  }
};

// Many jobs with retries, permanent failures, snoozes, enqueues from the handler, progress, a
// handler that ignores its deadline (killed, its kind keeps working), and kill -9 of the warm
// children mid-job (every job still completes: retried without loss).
TEST_F(ExecTest, ManyJobsRetriesSnoozeEnqueueDeadlinesAndKill9) {
  std::string toml = kind_toml("py_work", "work.py", 2,
                               "max_attempts = 3\nretry_schedule = \"1\"\ntimeout_seconds = 20\n") +
                     kind_toml("py_child", "work.py", 1) + sandbox_toml();
  start_runner({exec_so()}, toml);
  enqueue_healthy(50);

  const int n = load_jobs();
  auto plain = enqueue_many("py_work", n, R"({"progress": true})");
  ASSERT_EQ(static_cast<int>(plain.size()), n);
  std::vector<int64_t> retried, permanent, snoozed, parents, slow;
  for (int i = 0; i < 20; ++i)
    retried.push_back(enqueue_one("py_work", {{"fail_attempts", 1}, {"n", i}}));
  for (int i = 0; i < 5; ++i) permanent.push_back(enqueue_one("py_work", {{"permanent", true}}));
  double until = static_cast<double>(std::time(nullptr)) + 2;
  for (int i = 0; i < 5; ++i) snoozed.push_back(enqueue_one("py_work", {{"snooze_until", until}}));
  for (int i = 0; i < 20; ++i) parents.push_back(enqueue_one("py_work", {{"enqueue", true}}));
  // Slow jobs, whose children get kill -9 while they run.
  for (int i = 0; i < 2; ++i) slow.push_back(enqueue_one("py_work", {{"sleep_ms", 3000}}));

  // kill -9 of the warm children while the slow jobs run.
  bool running = wait_until(
      [&] {
        return count("SELECT count(*) FROM jr_jobs WHERE state = 'running' AND id IN (" +
                     std::to_string(slow[0]) + "," + std::to_string(slow[1]) + ")") > 0;
      },
      120s);
  ASSERT_TRUE(running) << runner_->log();
  std::this_thread::sleep_for(300ms);  // mid-job: the handler is inside its 3 s sleep
  auto pids = handler_pids("work.py");
  ASSERT_FALSE(pids.empty());
  for (pid_t p : pids) ::kill(p, SIGKILL);

  // Deadline ignored (the cancel message and SIGTERM): killed at its 2 s timeout, one attempt.
  int64_t stubborn = enqueue_one("py_work", {{"ignore_deadline", true}},
                                 {"--timeout", "2s", "--max-attempts", "1"});
  std::vector<int64_t> all = plain;
  for (auto* v : {&retried, &permanent, &snoozed, &parents, &slow}) {
    all.insert(all.end(), v->begin(), v->end());
  }
  all.push_back(stubborn);
  ASSERT_TRUE(all_finished(all, 600s))
      << "finished " << count("SELECT count(*) FROM jr_jobs_done WHERE kind = 'py_work'") << "\n"
      << interesting_log();

  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_done WHERE state = 'completed' AND id = ANY('{" +
                  join_ids(plain) + "}')"),
            n);
  // Progress reached the database (the last value of each job).
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_done WHERE progress::text LIKE '%half%' AND id = "
                  "ANY('{" +
                  join_ids(plain) + "}')"),
            n);
  for (int64_t id : retried) {
    EXPECT_EQ(state(id), "completed") << errors(id);
    EXPECT_EQ(result(id)["attempt"], 2) << errors(id);
    EXPECT_NE(errors(id).find("failing attempt 1 on purpose"), std::string::npos) << errors(id);
    // The Python exception's class names the failure (the SDK sends it as the error kind).
    EXPECT_EQ(first_kind(id), "runtime_error") << errors(id);
  }
  for (int64_t id : permanent) {
    EXPECT_EQ(state(id), "discarded");
    EXPECT_NE(errors(id).find("Permanent: bad input on purpose"), std::string::npos) << errors(id);
    EXPECT_EQ(first_kind(id), "permanent") << errors(id);
  }
  for (int64_t id : snoozed) {
    EXPECT_EQ(state(id), "completed");
    EXPECT_EQ(result(id)["attempt"], 1) << "a snooze used an attempt";
  }
  for (int64_t id : parents) {
    ASSERT_EQ(state(id), "completed") << errors(id);
    int64_t child = result(id)["child"].get<int64_t>();
    EXPECT_EQ(wait_finished(child, 60s), "completed");
    EXPECT_EQ(result(child)["child_of"], id);
  }
  EXPECT_EQ(state(stubborn), "discarded");
  EXPECT_NE(errors(stubborn).find("\"timeout\""), std::string::npos) << errors(stubborn);
  for (int64_t id : slow) {
    EXPECT_EQ(state(id), "completed") << errors(id);
  }
  // At least one slow job was running when its child got SIGKILL: that attempt failed as a
  // handler crash naming the signal, and the retry completed it.
  int64_t crashed = count(
      "SELECT count(*) FROM jr_jobs_done WHERE errors::text LIKE '%handler_crash%SIGKILL%' AND "
      "errors::text LIKE '%\"kind\": \"handler_crash\"%' AND "
      "state = 'completed' AND id IN (" +
      std::to_string(slow[0]) + "," + std::to_string(slow[1]) + ")");
  EXPECT_GE(crashed, 1) << errors(slow[0]) << errors(slow[1]);
  // Warm children: far fewer handler processes started than jobs run (the pids in the results).
  int64_t distinct = count(
      "SELECT count(DISTINCT result->>'pid') FROM jr_jobs_done WHERE kind = "
      "'py_work' AND result ? 'pid'");
  EXPECT_LT(distinct, 40) << "handlers are not reused";
  stop_and_check();
  EXPECT_TRUE(handler_pids("work.py").empty()) << "a handler outlived its runner";
}

// A hostile Python handler: every escape is refused, protocol abuse fails only its own attempt
// (the child is replaced), and the other kinds keep running.
TEST_F(ExecTest, HostileHandlerIsContained) {
  // A TCP listener on 127.0.0.1 that the handler must not reach (no network grant).
  int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(ls, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(ls, 16), 0);
  socklen_t al = sizeof a;
  ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &al);
  int port = ntohs(a.sin_port);
  std::string outside = dir_.path() + "/pwned-by-handler";

  std::string toml = kind_toml("py_hostile", "hostile.py", 1, "max_attempts = 1\n") +
                     kind_toml("py_work", "work.py", 1) + sandbox_toml();
  start_runner({exec_so()}, toml);
  enqueue_healthy(200);
  auto healthy_py = enqueue_many("py_work", 200, R"({})");

  std::map<std::string, int64_t> ids;
  for (const char* what :
       {"shadow", "sh", "python_again", "write", "scratch", "print", "flood", "flood_line"}) {
    nlohmann::json p = {{"do", what}, {"path", outside}};
    ids[what] = enqueue_one("py_hostile", p);
  }
  ids["socket"] = enqueue_one("py_hostile", {{"do", "socket"}, {"port", port}});
  // After the floods, the kind still works (its child was replaced).
  int64_t after = enqueue_one("py_hostile", {{"do", "scratch"}});

  for (const auto& [what, id] : ids) {
    std::string st = wait_finished(id, 120s);
    ASSERT_FALSE(st.empty()) << what << " did not finish\n" << interesting_log();
  }
  for (const char* what : {"shadow", "sh", "python_again", "write", "socket"}) {
    nlohmann::json r = result(ids[what]);
    EXPECT_TRUE(r.contains("blocked")) << what << ": " << r.dump() << errors(ids[what]);
    EXPECT_FALSE(r.contains("escaped")) << what << ": " << r.dump();
  }
  EXPECT_NE(result(ids["sh"])["blocked"].get<std::string>().find("PermissionError"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(outside)) << "the handler wrote outside its scratch";
  // No connection reached the listener.
  sockaddr_in peer{};
  socklen_t pl = sizeof peer;
  EXPECT_LT(::accept(ls, reinterpret_cast<sockaddr*>(&peer), &pl), 0);
  ::close(ls);
  // Its own scratch is writable; print() output did not break the protocol.
  EXPECT_EQ(state(ids["scratch"]), "completed") << errors(ids["scratch"]);
  EXPECT_EQ(result(ids["print"])["printed"], true) << errors(ids["print"]);
  // Flooding the protocol fails that attempt with a named error kind; nothing else.
  EXPECT_EQ(state(ids["flood"]), "discarded");
  EXPECT_EQ(first_kind(ids["flood"]), "handler_protocol") << errors(ids["flood"]);
  EXPECT_EQ(state(ids["flood_line"]), "discarded");
  EXPECT_EQ(first_kind(ids["flood_line"]), "handler_oversize") << errors(ids["flood_line"]);
  EXPECT_EQ(wait_finished(after, 60s), "completed") << errors(after);
  ASSERT_TRUE(all_finished(healthy_py, 120s));
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_done WHERE state = 'completed' AND id = ANY('{" +
                  join_ids(healthy_py) + "}')"),
            200);
  std::string log = stop_and_check();
  EXPECT_NE(log.find("hello from print"), std::string::npos) << "stray output is not logged";
}

// The exec grant is the operator's, for the shipped plugin only: a copy of the exec plugin that
// is not the shipped file (no built-in approval) is refused when kinds are configured for it,
// and `runner plugins check` shows the shipped one's commands and what it may execute.
TEST_F(ExecTest, ExecGrantOnlyForTheShippedPluginAndShownByCheck) {
  std::string cfg = dir_.path() + "/exec.toml";
  std::ofstream(cfg) << kind_toml("py_work", "work.py", 3) + sandbox_toml();
  auto r = jrtest::run_runner({"--config", cfg, "plugins", "check", exec_so(), "--json"}, env_);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc["exec_kinds"].size(), 1u) << doc.dump(2);
  EXPECT_EQ(doc["exec_kinds"][0]["command"][0], "/usr/bin/python3");
  std::string eff = doc["effective"]["exec"].dump();
  EXPECT_NE(eff.find("python3"), std::string::npos) << eff;
  EXPECT_NE(eff.find("ld-linux"), std::string::npos) << eff;
  EXPECT_EQ(doc["policy"]["workers"], 3);
  EXPECT_NE(doc["layers"]["seccomp"].dump().find("only from the spawn path"), std::string::npos)
      << doc["layers"].dump(2);

  std::string copy = jrtest::test_so("exec_copy", "exec_copy");
  r = jrtest::run_runner({"--config", cfg, "plugins", "check", copy, "--json"}, env_);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("only the shipped exec plugin may run programs"), std::string::npos)
      << r.out;
}

}  // namespace

namespace {

// The protocol is language-neutral: the shell example (sdk/python/examples/jq_handler.sh) runs
// jq and tr, which the operator grants with [plugins.exec.sandbox] exec (handlers may then exec
// those programs, and only those: a python3 the config does not list stays refused).
TEST_F(ExecTest, ShellHandlerWithGrantedPrograms) {
  std::string ex = std::string(JR_TEST_SOURCE_DIR) + "/sdk/python/examples";
  std::string toml = "[[plugins.exec.kinds]]\nkind = \"upper\"\ncommand = [\"/usr/bin/sh\", \"" +
                     ex + "/jq_handler.sh\"]\n[plugins.exec.sandbox]\nreadable = [\"" + ex +
                     "\"]\nexec = [\"/usr/bin/jq\", \"/usr/bin/tr\"]\n";
  start_runner({exec_so()}, toml);
  int64_t ok = enqueue_one("upper", {{"text", "hello"}});
  int64_t bad = enqueue_one("upper", nlohmann::json::object());
  ASSERT_EQ(wait_finished(ok, 60s), "completed") << errors(ok) << interesting_log();
  EXPECT_EQ(result(ok)["upper"], "HELLO");
  EXPECT_EQ(wait_finished(bad, 60s), "discarded");
  EXPECT_NE(errors(bad).find("payload.text is missing"), std::string::npos) << errors(bad);
  stop_and_check();
}

// A workflow step written in Python reads its parents' results through the protocol's
// parent_results message (docs/exec.md, "Parent results"), here from inside the sandbox.
TEST_F(ExecTest, WorkflowJoinReadsParentResultsThroughTheProtocol) {
  std::string toml =
      kind_toml("py_work", "work.py", 2) + kind_toml("py_join", "work.py", 1) + sandbox_toml();
  start_runner({exec_so()}, toml);
  enqueue_healthy(5);
  nlohmann::json doc = {
      {"steps",
       {{{"name", "a"}, {"kind", "py_work"}, {"payload", {{"n", 1}}}},
        {{"name", "b"}, {"kind", "py_work"}, {"payload", {{"n", 2}}}},
        {{"name", "c"}, {"kind", "py_work"}, {"payload", {{"n", 40}}}, {"depends_on", {"a"}}},
        {{"name", "j"}, {"kind", "py_join"}, {"depends_on", {"a", "b", "c"}}}}}};
  std::string path = dir_.path() + "/workflow.json";
  std::ofstream(path) << doc.dump();
  auto r = jrtest::run_runner({"enqueue", "--workflow", path}, env_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int64_t join = count("SELECT job_id FROM jr_workflow_steps WHERE step = 'j'");
  ASSERT_EQ(wait_finished(join, 60s), "completed") << errors(join) << interesting_log();
  EXPECT_EQ(
      result(join),
      (nlohmann::json{{"count", 3}, {"n_sum", 43}, {"steps", {"a", "b", "c"}}, {"past_end", 0}}));
  stop_and_check();
}

// The operator may trust the exec plugin in-process ([plugins.exec] isolation = "none"): its
// config-declared kinds are added to the in-process load as to the sandboxed description, so
// the two agree and it serves (it was refused as "describes itself differently").
TEST_F(ExecTest, InProcessWhenTheOperatorSaysSo) {
  std::string toml = kind_toml("py_work", "work.py", 1) + "[plugins.exec]\nisolation = \"none\"\n";
  start_runner({exec_so()}, toml);
  enqueue_healthy(20);
  int64_t ok = enqueue_one("py_work", {{"n", 1}});
  int64_t failed = enqueue_one("py_work", {{"permanent", true}});
  ASSERT_EQ(wait_finished(ok, 60s), "completed") << errors(ok) << interesting_log();
  EXPECT_EQ(wait_finished(failed, 60s), "discarded");
  EXPECT_EQ(first_kind(failed), "permanent") << errors(failed);
  EXPECT_NE(runner_->log().find("plugin loaded in-process"), std::string::npos);
  stop_and_check();
}

// OpenTelemetry traces: the job message carries the attempt's traceparent (jr.trace.v1) and the
// Python SDK gives it to the handler as job.traceparent; without an exporter on the runner it is
// the producer's, passed through, and a job enqueued without one has none.
TEST_F(ExecTest, TraceparentInTheJobMessage) {
  start_runner({exec_so()}, kind_toml("py_work", "work.py", 1) +
                                kind_toml("py_child", "work.py", 1) + sandbox_toml());
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  int64_t traced =
      enqueue_one("py_work", {{"traceparent", true}, {"enqueue", true}}, {"--traceparent", tp});
  int64_t untraced = enqueue_one("py_work", {{"traceparent", true}});
  ASSERT_EQ(wait_finished(traced, 60s), "completed") << errors(traced) << interesting_log();
  ASSERT_EQ(wait_finished(untraced, 60s), "completed") << errors(untraced);
  EXPECT_EQ(result(traced)["traceparent"], tp);
  // The job it enqueued (host->enqueue without a traceparent) joins the trace.
  std::string child = result(traced)["child"].dump();
  EXPECT_EQ(q("SELECT options->>'traceparent' FROM jr_jobs_all WHERE id = " + child), tp);
  EXPECT_TRUE(result(untraced)["traceparent"].is_null()) << result(untraced).dump();
  stop_and_check();
}

}  // namespace
