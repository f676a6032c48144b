// Workflow documents (issue 23, docs/job-model.md "Workflows"): the checks `runner enqueue
// --workflow FILE` and POST /api/v1/workflows make before the database is touched. They are
// the rules of jr_workflow_check() (migration 18, host/store/migrations/018_workflows.sql) in the
// same order with the same messages (tests/host/workflow_test.cpp compares the two), and each
// step's kind, payload and options go through the one job-options parser (ops/job_options.hpp).
// Also the bounds of a page of parent results (jr.parent_results.v1, the exec protocol, the API).
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace jr::ops {

// A refused document; what() names the problem (jr_workflow_enqueue's message without its
// "jr_workflow_enqueue: " prefix).
class WorkflowError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

constexpr size_t kMaxWorkflowSteps = 10000;

// A page of parent results holds at most this many parents, whose entries total at most this
// many bytes of JSON text (an entry whose result alone is larger comes without it, marked
// "result_omitted"); see jr_parent_results().
constexpr uint32_t kParentResultsPageBytes = 4u << 20;
constexpr uint32_t kParentResultsPageCount = 1000;

struct WorkflowSummary {
  size_t steps = 0;
  size_t edges = 0;
};

// Checks a workflow document {"name"?, "steps": [{"name", "kind", "payload"?, "options"?,
// "depends_on"?: [step names]}]}: structure, names unique, dependencies known, no cycle, then
// every step's job options. Throws WorkflowError.
WorkflowSummary check_workflow(const nlohmann::json& doc);

}  // namespace jr::ops
