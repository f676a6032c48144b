-- migration 6: index for dependency resolution (waiting jobs by id)
--
-- v6: dependency resolution runs every poll interval and reads the waiting jobs in id order;
-- without an index on exactly that it walked the primary key over the whole queue (no waiting
-- job at all: a full scan per second). Only waiting jobs are in this index.

CREATE INDEX jr_jobs_waiting_id_idx ON jr_jobs (id) WHERE state = 'waiting';
