# jobrunner_add_plugin(): builds a jobrunner handler plugin the way the host expects it.
# Part of the installed JobRunnerSDK package (find_package(JobRunnerSDK)); see
# docs/writing-a-plugin.md.
#
#   jobrunner_add_plugin(<target> SOURCES a.cpp b.c ... [LIBS lib ...] [OUTPUT_DIR dir])
#
# Produces a MODULE library lib<target>.so that
#   - is compiled with hidden visibility (C and C++, inline functions too), so only what the
#     version script names is visible;
#   - exports exactly the entry symbol jr_plugin_entry_v1 (the version script exports.map
#     installed beside this file: everything else is local);
#   - is linked with -z now (every symbol bound at load time, as the host loads with RTLD_NOW:
#     a missing symbol fails at load, not in the middle of a job) and --no-undefined (a missing
#     symbol fails the link instead);
#   - links JobRunnerSDK::sdk (the headers and nlohmann_json) plus LIBS, privately.
# C++ sources are compiled as at least C++17 (jobrunner/plugin.hpp needs it).
include_guard(GLOBAL)

set(JobRunnerSDK_EXPORTS_MAP "${CMAKE_CURRENT_LIST_DIR}/exports.map" CACHE INTERNAL
  "version script that exports only the jobrunner entry symbol")

function(jobrunner_add_plugin target)
  cmake_parse_arguments(ARG "" "OUTPUT_DIR" "SOURCES;LIBS" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "jobrunner_add_plugin(${target}): SOURCES is required")
  endif()
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "jobrunner_add_plugin(${target}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE JobRunnerSDK::sdk ${ARG_LIBS})
  get_property(_langs GLOBAL PROPERTY ENABLED_LANGUAGES)
  if("CXX" IN_LIST _langs)
    target_compile_features(${target} PRIVATE cxx_std_17)
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    POSITION_INDEPENDENT_CODE ON
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS "${JobRunnerSDK_EXPORTS_MAP}")
  target_link_options(${target} PRIVATE
    "LINKER:--version-script=${JobRunnerSDK_EXPORTS_MAP}" "LINKER:-z,now" "LINKER:--no-undefined")
  if(ARG_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIR}")
  endif()
endfunction()
