// Workflows that pass data (issue 23, docs/job-model.md "Workflows"), applied as migration 18
// (host/store/migrations.cpp lists it): jr_workflows and jr_workflow_steps, jr_workflow_check()
// (the document rules, mirrored by host/store/workflow.cpp with the same messages),
// jr_workflow_enqueue() and jr_workflow_status() (both granted to jobrunner_producer,
// kPrivileges), jr_parent_results() (a child's page of its parents' results), and the triggers
// on jr_jobs_done that follow each step's outcome and resume the cancelled dependents of a
// retried step.
//
// A constant string; no state.
#pragma once

namespace jr {

// v18: workflows, their steps, and parent results.
extern const char* const kMigrationV18;

}  // namespace jr
