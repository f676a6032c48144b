-- migration 10: finalizer jobs for discarded and cancelled jobs of kinds that declare one
--
-- v10: finalizers. A plugin may name, per kind, a finalizer kind in its manifest
-- ("finalizers": {"scan": "scan_finalize"}); the runners publish it in jr_kinds with the other
-- kind defaults. Whenever a job of such a kind ends discarded (dead letter) or cancelled, one
-- job of the finalizer kind is inserted in the transaction that finishes it, so the plugin can
-- record an outcome that its own code never saw (a timeout, a kill, a lost lease, a cancel
-- before it ran). A trigger on jr_jobs_done, like the webhook outbox (v5), so every finishing
-- path is covered without each one knowing: the runner's outcomes, the rescuer, ttl expiry,
-- cancellation and dependency resolution. A row trigger whose WHEN clause PostgreSQL evaluates
-- before queueing anything, so completions (the hot path) cost one comparison per row and never
-- call the function. Exactly once per finish: the finalizer job carries the unique key
-- "jr:finalize:<job id>" while it is live, and a finish that would add a second one (a revived
-- job finishing again before its finalizer ran) adds nothing.

ALTER TABLE jr_kinds ADD COLUMN finalizer text;

CREATE FUNCTION jr_enqueue_finalizer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO jr_jobs (queue, kind, payload, priority, base_priority, unique_key)
  SELECT coalesce(f.default_queue, NEW.queue), k.finalizer,
         jsonb_build_object('job_id', NEW.id, 'kind', NEW.kind, 'state', NEW.state,
                            'error_kind', NEW.errors -> -1 ->> 'kind',
                            'error', NEW.errors -> -1 ->> 'message',
                            'payload', NEW.payload),
         NEW.priority, NEW.priority, 'jr:finalize:' || NEW.id
    FROM jr_kinds k LEFT JOIN jr_kinds f ON f.kind = k.finalizer
   WHERE k.kind = NEW.kind AND k.finalizer IS NOT NULL
  ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING;
  RETURN NULL;
END $$;
CREATE TRIGGER jr_jobs_done_finalizer AFTER INSERT ON jr_jobs_done
  FOR EACH ROW WHEN (NEW.state IN ('discarded', 'cancelled'))
  EXECUTE FUNCTION jr_enqueue_finalizer();
