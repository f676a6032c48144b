-- The privileges of the runner's objects, (re)stated after every batch of migrations (so a
-- later migration cannot open an object by oversight, nor undo these by CREATE OR REPLACE):
--   - PUBLIC has nothing on any jr_* table, view, sequence or function in the schema the
--     migrations run in (tables have nothing by default; functions are executable by PUBLIC by
--     default, as jr_enqueue was). Objects of other owners are left alone.
--   - jr_enqueue runs as its owner (SECURITY DEFINER) with a fixed search_path (this schema, then
--     pg_temp), and the role jobrunner_producer, when it exists, may execute it: a producer needs
--     no privilege on the tables. The same for the other producer functions (v16):
--     jr_enqueue_many and jr_job_status, and (v17) jr_batch_enqueue and jr_batch_status, and
--     (v18) jr_workflow_enqueue and jr_workflow_status.

DO $jr$
DECLARE
  r record;
  fn text;
BEGIN
  FOR r IN
    SELECT c.oid::regclass AS obj, CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS what
      FROM pg_class c
     WHERE c.relnamespace = current_schema()::regnamespace AND c.relname LIKE 'jr\_%'
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND pg_has_role(c.relowner, 'MEMBER')
  LOOP
    EXECUTE format('REVOKE ALL ON %s %s FROM PUBLIC', r.what, r.obj);
  END LOOP;
  FOR r IN
    SELECT p.oid::regprocedure AS fn FROM pg_proc p
     WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'jr\_%'
       AND pg_has_role(p.proowner, 'MEMBER')
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', r.fn);
  END LOOP;
  -- The producer functions.
  FOREACH fn IN ARRAY ARRAY['jr_enqueue(text, jsonb, jsonb)',
                            'jr_enqueue_many(text, jsonb, jsonb)', 'jr_job_status(bigint)',
                            'jr_batch_enqueue(text, jsonb, jsonb, jsonb, jsonb)',
                            'jr_batch_status(bigint)',
                            -- v18
                            'jr_workflow_enqueue(jsonb)', 'jr_workflow_status(bigint)'] LOOP
    IF pg_has_role((SELECT proowner FROM pg_proc WHERE oid = to_regprocedure(fn)), 'MEMBER') THEN
      EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', fn,
                     current_schema());
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jobrunner_producer') THEN
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO jobrunner_producer', fn);
      END IF;
    END IF;
  END LOOP;
END $jr$;
