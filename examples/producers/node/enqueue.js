#!/usr/bin/env node
// Enqueue jobrunner jobs from a Node.js application with node-postgres (`pg`, pinned in
// package.json; scripts/install-producer-deps.sh installs it with `npm ci`).
//
// What it shows (docs/job-model.md, "Producers in other languages"):
//   1. a job enqueued in the application's own transaction, with the application's row: both
//      are committed together, or neither is;
//   2. a rolled-back transaction enqueues nothing;
//   3. many jobs in one statement (jr_enqueue_many);
//   4. a job's status and result (jr_job_status), optionally waiting until it has finished.
//
// The database URL comes from DATABASE_URL; connect as a role that is a member of
// jobrunner_producer (GRANT jobrunner_producer TO your_app_role) and may create the example's
// table "signups" in its own schema. Prints one JSON object with the ids, for the test suite
// (tests/host/producers_test.cpp) and for you.
//
// Usage: DATABASE_URL=postgresql://... node enqueue.js [--wait SECONDS] [--count N]
'use strict';

const { Client, types } = require('pg');

const KIND = 'echo'; // the demo plugin's kind: it returns its payload as the result
const SOURCE = 'node';

// Job ids are bigint; pg hands them over as strings. Below 2^53 they are exact as numbers.
types.setTypeParser(types.builtins.INT8, (text) => {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`bigint ${text} does not fit a JS number`);
  return n;
});

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? Number(process.argv[i + 1]) : fallback;
}

// Runs fn(client) in one transaction: COMMIT when it returns, ROLLBACK when it throws.
async function transaction(client, fn) {
  await client.query('BEGIN');
  try {
    const value = await fn(client);
    await client.query('COMMIT');
    return value;
  } catch (e) {
    await client.query('ROLLBACK');
    throw e;
  }
}

class Rollback extends Error {}

async function main() {
  const wait = option('--wait', 0);
  const count = option('--count', 100);
  if (!process.env.DATABASE_URL) throw new Error('set DATABASE_URL to the runner\'s database');
  const client = new Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    await client.query(
        'CREATE TABLE IF NOT EXISTS signups (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,' +
        ' email text NOT NULL, source text NOT NULL, welcome_job bigint)');

    // 1. The application's row and its job, in one transaction. JSON goes in as text ($2, $3)
    // and PostgreSQL casts it to jsonb.
    const { signupId, jobId } = await transaction(client, async (c) => {
      const signup = await c.query(
          'INSERT INTO signups (email, source) VALUES ($1, $2) RETURNING id',
          ['ada@example.com', SOURCE]);
      const signupId = signup.rows[0].id;
      const job = await c.query('SELECT jr_enqueue($1, $2::jsonb, $3::jsonb) AS id', [
        KIND, JSON.stringify({ signup_id: signupId, email: 'ada@example.com', source: SOURCE }),
        JSON.stringify({ max_attempts: 5, timeout_seconds: 30 }),
      ]);
      const jobId = job.rows[0].id;
      await c.query('UPDATE signups SET welcome_job = $1 WHERE id = $2', [jobId, signupId]);
      return { signupId, jobId };
    });

    // 2. The same, abandoned: neither the row nor the job exists afterwards.
    let rolledBackJobId = null;
    try {
      await transaction(client, async (c) => {
        const signup = await c.query(
            'INSERT INTO signups (email, source) VALUES ($1, $2) RETURNING id',
            ['rolled-back@example.com', SOURCE]);
        const job = await c.query('SELECT jr_enqueue($1, $2::jsonb, $3::jsonb) AS id', [
          KIND, JSON.stringify({ signup_id: signup.rows[0].id, source: SOURCE }),
          JSON.stringify({ max_attempts: 5 }),
        ]);
        rolledBackJobId = job.rows[0].id;
        throw new Rollback();
      });
    } catch (e) {
      if (!(e instanceof Rollback)) throw e;
    }

    // 3. Many jobs, one statement: one id per payload, in the payloads' order.
    const payloads = Array.from({ length: count }, (_, n) => ({ n, source: SOURCE }));
    const bulk = await client.query(
        'SELECT id FROM jr_enqueue_many($1, $2::jsonb, $3::jsonb) AS id',
        [KIND, JSON.stringify(payloads), JSON.stringify({ priority: 10, max_attempts: 3 })]);
    const bulkJobIds = bulk.rows.map((r) => r.id);

    // 4. The status of the first job (pg decodes jsonb into an object; null when unknown).
    const deadline = Date.now() + wait * 1000;
    let status;
    for (;;) {
      const r = await client.query('SELECT jr_job_status($1) AS status', [jobId]);
      status = r.rows[0].status;
      const finished =
          status !== null && ['completed', 'discarded', 'cancelled'].includes(status.state);
      if (finished || Date.now() >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    console.log(JSON.stringify({
      source: SOURCE,
      signup_id: signupId,
      job_id: jobId,
      rolled_back_job_id: rolledBackJobId,
      bulk_job_ids: bulkJobIds,
      status,
    }));
  } finally {
    await client.end();
  }
}

main().catch((e) => {
  console.error(`enqueue.js: ${e.message}`);
  process.exit(1);
});
