-- migration 12: waiting-children index without a pending list
--
-- Completions look up the waiting children of the jobs they complete (issue 17 handoff):
-- without the pending list, a lookup does not scan every recently inserted entry.
ALTER INDEX jr_jobs_waiting_idx SET (fastupdate = off)
