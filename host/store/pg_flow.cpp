// Flow-control maintenance SQL: dependency resolution and priority aging (run by the leader).
#include "log.hpp"
#include "pg_internal.hpp"

namespace jr::pg {

const char* opt(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }

std::pair<int, int> resolve_dependencies(pqxx::work& tx, int limit) {
  // A parent counts as done when completed; as dead when discarded or cancelled. A parent still
  // in jr_jobs is pending.
  auto r = tx.exec_params(R"SQL(
    WITH w AS (
      SELECT j.id,
             bool_and(d.state = 'completed') FILTER (WHERE true) AS all_done,
             count(*) FILTER (WHERE d.state IN ('discarded', 'cancelled')) AS dead,
             min(p) FILTER (WHERE d.state IN ('discarded', 'cancelled')) AS dead_parent,
             count(*) FILTER (WHERE d.id IS NULL) AS pending
        FROM (SELECT id, depends_on FROM jr_jobs WHERE state = 'waiting'
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) j
        CROSS JOIN LATERAL unnest(j.depends_on) p
        LEFT JOIN jr_jobs_done d ON d.id = p
       GROUP BY j.id),
    promote AS (
      UPDATE jr_jobs j SET state = 'available', run_at = now()
        FROM w WHERE j.id = w.id AND w.pending = 0 AND w.dead = 0
      RETURNING j.id),
    dead AS (
      DELETE FROM jr_jobs j USING w WHERE j.id = w.id AND w.dead > 0
      RETURNING j.*, w.dead_parent),
    ins AS (
      INSERT INTO jr_jobs_done (id, queue, kind, payload, state, priority, attempt, max_attempts,
                                result, progress, errors, options, created_at, started_at,
                                timeout_ms, retry_schedule, lock_key, lock_limit)
      SELECT id, queue, kind, payload, 'cancelled', priority, attempt, max_attempts, NULL, progress,
             errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(),
               'kind', 'dependency', 'message',
               'parent job ' || dead_parent || ' was dead-lettered or cancelled')),
             options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit
        FROM dead
      RETURNING id)
    SELECT (SELECT count(*) FROM promote), (SELECT count(*) FROM ins))SQL",
                          limit);
  return {r[0][0].as<int>(), r[0][1].as<int>()};
}

int age_priorities(pqxx::work& tx, double seconds_per_point, int limit) {
  if (seconds_per_point <= 0) return 0;
  // Only jobs below the highest waiting priority can starve, so only they age, and never past
  // it: a queue where everything has one priority costs nothing. Everything goes through
  // jr_jobs_queue_available_idx (queue, priority DESC, id): a loose index scan finds the queues
  // and each queue's top priority (its first index entry), and the candidates are read per
  // queue from the range below the top - no scan of the available jobs (max(priority) over
  // them used to cost ~0.5 ms per 1,000 queued jobs, every time).
  auto r = tx.exec_params(R"SQL(
    WITH RECURSIVE qs AS (
      SELECT min(queue) AS queue FROM jr_jobs WHERE state = 'available'
      UNION ALL
      SELECT (SELECT min(j.queue) FROM jr_jobs j WHERE j.state = 'available' AND j.queue > qs.queue)
        FROM qs WHERE qs.queue IS NOT NULL),
    top AS (
      SELECT max((SELECT j.priority FROM jr_jobs j WHERE j.state = 'available' AND j.queue = qs.queue
                   ORDER BY j.priority DESC, j.id LIMIT 1)) AS p
        FROM qs WHERE qs.queue IS NOT NULL),
    aged AS (
      SELECT c.id, least(t.p, coalesce(c.base_priority, c.priority) +
                              floor(extract(epoch from now() - c.run_at) / $1)::int) AS np
        FROM top t CROSS JOIN qs CROSS JOIN LATERAL (
          SELECT j.id, j.base_priority, j.priority, j.run_at FROM jr_jobs j
           WHERE j.state = 'available' AND j.queue = qs.queue AND j.priority < t.p
           ORDER BY j.priority DESC, j.id
           LIMIT $2 FOR UPDATE SKIP LOCKED) c
       WHERE qs.queue IS NOT NULL
       LIMIT $2)
    UPDATE jr_jobs j SET priority = aged.np FROM aged
     WHERE j.id = aged.id AND aged.np > j.priority)SQL",
                          seconds_per_point, limit);
  return static_cast<int>(r.affected_rows());
}

void cron_upsert(pqxx::work& tx, const std::vector<CronEntry>& entries) {
  for (const auto& e : entries) {
    tx.exec_params(R"SQL(
      INSERT INTO jr_cron (name, schedule, timezone, kind, queue, payload, backfill, source)
      VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
      ON CONFLICT (name) DO UPDATE SET
        next_run_at = CASE WHEN jr_cron.schedule IS DISTINCT FROM EXCLUDED.schedule
                             OR jr_cron.timezone IS DISTINCT FROM EXCLUDED.timezone
                           THEN NULL ELSE jr_cron.next_run_at END,
        schedule = EXCLUDED.schedule, timezone = EXCLUDED.timezone, kind = EXCLUDED.kind,
        queue = EXCLUDED.queue, payload = EXCLUDED.payload, backfill = EXCLUDED.backfill,
        source = EXCLUDED.source, updated_at = now())SQL",
                   e.name, e.schedule, e.timezone, e.kind, opt(e.queue), e.payload.dump(),
                   e.backfill, e.source);
  }
}

int cron_run(pqxx::work& tx, const Store::CronNext& next) {
  // Locked rows: a second leader (or a stale one) waits, then re-checks the due condition
  // against the advanced next_run_at and skips: each tick is enqueued once.
  auto due = tx.exec(R"SQL(
    SELECT name, schedule, timezone, kind, queue, payload::text, backfill, next_run_at IS NULL,
           to_char(next_run_at AT TIME ZONE timezone, 'YYYY-MM-DD HH24:MI:SS'),
           to_char(now() AT TIME ZONE timezone, 'YYYY-MM-DD HH24:MI:SS'),
           next_run_at < now() - interval '5 minutes'
      FROM jr_cron WHERE next_run_at IS NULL OR next_run_at <= now()
     ORDER BY name FOR UPDATE SKIP LOCKED)SQL");
  int enqueued = 0;
  for (const auto& row : due) {
    std::string name = row[0].c_str(), schedule = row[1].c_str(), tz = row[2].c_str();
    bool backfill = row[6].as<bool>();
    bool fresh = row[7].as<bool>();
    std::string now_local = row[9].c_str();
    std::vector<std::string> ticks;
    std::string after = now_local;
    if (!fresh) {
      std::string tick = row[8].c_str();
      bool stale = row[10].as<bool>();
      if (backfill) {
        // Every missed tick up to now, at most 1,000.
        while (!tick.empty() && tick <= now_local && ticks.size() < 1000) {
          ticks.push_back(tick);
          auto n = next(schedule, tick);
          tick = n ? *n : "";
        }
        after = ticks.empty() ? now_local : ticks.back();
      } else if (!stale) {
        ticks.push_back(tick);
      }
    }
    for (const auto& tick : ticks) {
      // Each tick in a savepoint: a job the schema refuses (a rate key field set for the kind
      // whose value in the entry's payload cannot make a key) is logged and skipped, and the
      // other entries, and the maintenance after cron, still run.
      pqxx::result r;
      tx.exec("SAVEPOINT cron_tick");
      try {
        r = tx.exec_params(R"SQL(
          INSERT INTO jr_jobs (queue, kind, payload, state, priority, base_priority, unique_key)
          VALUES (coalesce($2, (SELECT default_queue FROM jr_kinds WHERE kind = $1), 'default'),
                  $1, $3::jsonb, 'available', 0, 0, $4)
          ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING RETURNING id)SQL",
                           row[3].c_str(), row[4].is_null() ? nullptr : row[4].c_str(),
                           row[5].c_str(), "cron:" + name + ":" + tick + " " + tz);
        tx.exec("RELEASE SAVEPOINT cron_tick");
      } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() != "22023") throw;
        tx.exec("ROLLBACK TO SAVEPOINT cron_tick");
        std::string what = e.what();
        log::error("cron: the job of this tick was refused; the tick is skipped",
                   {{"cron", name}, {"tick", tick}, {"error", what.substr(0, what.find('\n'))}});
        continue;
      }
      enqueued += static_cast<int>(r.affected_rows());
      // The dashboard shows the job each tick made (migration 11; the last 20 per entry).
      if (!r.empty()) {
        tx.exec_params("INSERT INTO jr_cron_runs (name, tick, job_id) VALUES ($1, $2, $3)", name,
                       tick, r[0][0].as<int64_t>());
      }
    }
    if (!ticks.empty()) {
      tx.exec_params(
          "DELETE FROM jr_cron_runs WHERE name = $1 AND job_id < (SELECT min(job_id) FROM (SELECT "
          "job_id FROM jr_cron_runs WHERE name = $1 ORDER BY job_id DESC LIMIT 20) k)",
          name);
    }
    auto n = next(schedule, after);
    tx.exec_params(
        "UPDATE jr_cron SET next_run_at = ($2::timestamp AT TIME ZONE timezone), last_run_at = "
        "CASE WHEN $3 THEN now() ELSE last_run_at END WHERE name = $1",
        name, n ? n->c_str() : nullptr, !ticks.empty());
  }
  return enqueued;
}

}  // namespace jr::pg
