-- migration 21: history without its kind-only index
--
-- Every query of jr_jobs_done names a state: listings and the dead-letter filters by kind use
-- jr_jobs_done_kind_state_idx (state, kind, finished_at), retention and unfiltered listings
-- jr_jobs_done_state_idx (state, finished_at). jr_jobs_done_kind_idx (kind, finished_at) served
-- none of them, and every finished job paid for it: one more index entry per completion, 6.5%
-- of the WAL a job writes (1,194 bytes per job before, 1,116 after, measured with the runner's
-- claim and completion under pgbench; issue 18). tests/ops/ui_db_test.cpp checks that no
-- dashboard query falls back to a sequential scan of the history.
DROP INDEX IF EXISTS jr_jobs_done_kind_idx;
