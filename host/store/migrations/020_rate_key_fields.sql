-- migration 20: per-tenant rate limits: rate keys from a payload field named per kind
--
-- v20. Rate keys taken from a payload field named per kind (docs/job-model.md "Per-tenant
-- limits"). A row of jr_rate_key_fields says: a job of `kind` enqueued without a rate key gets
-- `prefix:value`, where value is the payload's `field` (a top-level name, or a path with dots).
-- The work is a BEFORE INSERT trigger on jr_jobs, so every way in (the CLI, the API, SQL
-- producers, batches, workflows, cron, plugins) derives the key the same way. The trigger
-- exists only while rows exist, and its WHEN lists their kinds: no field set, no trigger; with
-- one, other kinds' rows skip the function (but any BEFORE ROW trigger makes COPY insert row by
-- row, for every kind). jr_rate_key_field_set() and jr_rate_key_field_rm() keep it in step,
-- under the table's lock. A derived key is marked (options.rate_key_from = the field) and made
-- again whenever the row is inserted anew, so copies and retries get their own payload's key.

CREATE TABLE jr_rate_key_fields (
  kind       text PRIMARY KEY CHECK (kind <> '' AND kind !~ '[\x01-\x1f\x7f]'),
  field      text NOT NULL CHECK (field <> '' AND field !~ '[\x01-\x1f\x7f]'
                                  AND field !~ '(^\.|\.\.|\.$)'
                                  AND cardinality(string_to_array(field, '.')) <= 8
                                  AND octet_length(field) <= 8 * 257),
  prefix     text NOT NULL CHECK (prefix ~ '^[A-Za-z0-9_.-]{1,128}$'
                                  AND prefix NOT IN ('queue', 'kind')),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION jr_rate_key_from_field() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  f record;
  v jsonb;
  k text;
  o jsonb := coalesce(NEW.options, '{}'::jsonb);
BEGIN
  IF o ? 'rate_key' AND NOT o ? 'rate_key_from' THEN
    RETURN NEW;  -- a key given at enqueue wins
  END IF;
  SELECT field, prefix INTO f FROM jr_rate_key_fields WHERE kind = NEW.kind;
  IF NOT FOUND THEN
    RETURN NEW;
  END IF;
  -- A key this trigger made ("rate_key_from" says so) is made again from this row's payload: a
  -- row copied from another (jr_enqueue_many) or moved back (a retry) gets its own.
  o := o - 'rate_key' - 'rate_key_from';
  v := NEW.payload #> string_to_array(f.field, '.');
  IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
    NEW.options := o;  -- no value: no rate key (its queue's and kind's limits apply)
    RETURN NEW;
  END IF;
  IF jsonb_typeof(v) IN ('string', 'number', 'boolean') THEN
    k := f.prefix || ':' || (v #>> '{}');
    IF octet_length(k) <= 1024 AND k !~ '[\x01-\x1f\x7f*]' AND k <> f.prefix || ':' THEN
      NEW.options := o || jsonb_build_object('rate_key', k, 'rate_key_from', f.field);
      RETURN NEW;
    END IF;
  END IF;
  IF NEW.created_at < now() OR pg_trigger_depth() > 1 THEN
    -- A job enqueued earlier and moved back (a retry, a revived workflow step), accepted before
    -- the field was set, or one the schema's own triggers make inside another statement (a
    -- batch's callback, a finalizer, a workflow step in a completion): it runs without a key,
    -- rather than failing the retry or the completion that made it.
    NEW.options := o;
    RETURN NEW;
  END IF;
  IF jsonb_typeof(v) NOT IN ('string', 'number', 'boolean') THEN
    RAISE EXCEPTION 'rate key field ''%'' of kind %: the payload''s value must be a string, '
      'number or boolean, got %', f.field, NEW.kind, left(v::text, 80) USING ERRCODE = '22023';
  END IF;
  RAISE EXCEPTION 'rate key field ''%'' of kind %: the key % made from the payload is empty, '
    'longer than 1024 bytes, or holds a control character or *', f.field, NEW.kind, left(k, 80)
    USING ERRCODE = '22023';
END $$;

-- DDL on jr_jobs waits for every transaction using it, and while it waits every claim, renewal
-- and enqueue waits behind it: at most 5 s here (then an error: try again), never indefinitely.
CREATE FUNCTION jr_rate_key_fields_sync() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  kinds text;
BEGIN
  PERFORM set_config('lock_timeout', '5s', true);
  SELECT string_agg(quote_literal(kind), ', ' ORDER BY kind) INTO kinds FROM jr_rate_key_fields;
  DROP TRIGGER IF EXISTS jr_jobs_rate_key_field ON jr_jobs;
  IF kinds IS NOT NULL THEN
    EXECUTE 'CREATE TRIGGER jr_jobs_rate_key_field BEFORE INSERT ON jr_jobs FOR EACH ROW '
            'WHEN (NEW.kind IN (' || kinds || ') AND (NOT coalesce(NEW.options ? ''rate_key'', '
            'false) OR coalesce(NEW.options ? ''rate_key_from'', false))) '
            'EXECUTE FUNCTION jr_rate_key_from_field()';
  END IF;
END $$;

CREATE FUNCTION jr_rate_key_field_set(p_kind text, p_field text, p_prefix text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('lock_timeout', '5s', true);
  LOCK TABLE jr_rate_key_fields IN SHARE ROW EXCLUSIVE MODE;
  INSERT INTO jr_rate_key_fields (kind, field, prefix)
  VALUES (p_kind, p_field, coalesce(p_prefix, regexp_replace(p_field, '^.*\.', '')))
  ON CONFLICT (kind) DO UPDATE SET field = EXCLUDED.field, prefix = EXCLUDED.prefix,
                                   updated_at = now();
  PERFORM jr_rate_key_fields_sync();
END $$;

CREATE FUNCTION jr_rate_key_field_rm(p_kind text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  found_row boolean;
BEGIN
  PERFORM set_config('lock_timeout', '5s', true);
  LOCK TABLE jr_rate_key_fields IN SHARE ROW EXCLUSIVE MODE;
  DELETE FROM jr_rate_key_fields WHERE kind = p_kind;
  found_row := FOUND;
  PERFORM jr_rate_key_fields_sync();
  RETURN found_row;
END $$;
