// Host side of plugins/exec (issue 22): the job kinds the operator declares in
// [[plugins.<name>.kinds]] for a plugin whose manifest says `"config_kinds": true`, and the
// programs their commands run (what the exec grant makes executable). The kinds and the commands
// come from the runner's configuration only: a plugin file cannot declare or widen them.
// Pure functions of the config plus reads of the command files (to find their interpreters);
// thread-safe, no state.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "plugin_loader.hpp"

namespace jr::sandbox {

// One [[plugins.<name>.kinds]] entry, validated (PolicyError names the entry and the key).
struct ExecKind {
  KindInfo info;                           // kind, queue, timeout, attempts, retry schedule
  std::vector<std::string> command;        // argv; command[0] an absolute path
  std::map<std::string, std::string> env;  // the handler's environment (nothing else passes)
  int workers = 1;                         // warm handler processes of this kind
};

// Parses `section["kinds"]` (absent: none). Throws PolicyError.
std::vector<ExecKind> parse_exec_kinds(const nlohmann::json& section);

// The files the kinds' commands execute: each command's program, the interpreter of a script
// (`#!`) and the ELF interpreter (PT_INTERP) of each, symlinks resolved, de-duplicated. Throws
// PolicyError when a command's program is missing, not a regular executable file, or relative.
std::vector<std::string> exec_programs(const std::vector<ExecKind>& kinds);

// The interpreters a program needs (script `#!` chains up to 4 deep, ELF PT_INTERP), resolved,
// the program itself first. Throws PolicyError.
std::vector<std::string> program_closure(const std::string& program);

// For a plugin whose manifest declares `"config_kinds": true`: appends the kinds of its section
// of `sections` ([plugins.<p.name>]) to p.kinds. Returns the number added; throws PolicyError on
// a bad entry or a kind the plugin already has.
size_t add_config_kinds(LoadedPlugin& p, const nlohmann::json& sections);

}  // namespace jr::sandbox
