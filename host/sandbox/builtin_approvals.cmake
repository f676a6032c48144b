# Built-in approvals of the shipped plugins: "the shipped default configuration" of the trust
# model (docs/sandbox.md, "Grants and approvals"). At build time the SHA-256 of every built
# shipped plugin (a MODULE library whose output lands in JR_PLUGIN_OUTPUT_DIR, as jr_plugin()
# does by default; test plugins go elsewhere) is written into a generated source compiled into
# the runner, so a shipped plugin gets exactly what its manifest requests, and a rebuilt plugin
# gets a new hash automatically (the generated source depends on the plugin files).
#
# jr_builtin_approvals() is called once at the end of the top-level CMakeLists.txt, after every
# plugin target exists.
include_guard(GLOBAL)

function(_jr_shipped_plugins dir out)
  set(found "")
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t IN LISTS targets)
    get_target_property(type ${t} TYPE)
    get_target_property(outdir ${t} LIBRARY_OUTPUT_DIRECTORY)
    if(type STREQUAL "MODULE_LIBRARY" AND outdir STREQUAL JR_PLUGIN_OUTPUT_DIR)
      list(APPEND found ${t})
    endif()
  endforeach()
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    _jr_shipped_plugins("${sub}" sub_found)
    list(APPEND found ${sub_found})
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()

function(jr_builtin_approvals)
  _jr_shipped_plugins("${CMAKE_SOURCE_DIR}" plugins)
  set(gen "${CMAKE_BINARY_DIR}/generated/builtin_approvals.cpp")
  set(files "")
  foreach(t IN LISTS plugins)
    list(APPEND files "$<TARGET_FILE:${t}>")
  endforeach()
  # "|"-separated: a ;-list would be split into separate arguments.
  string(JOIN "|" files_arg ${files})
  add_custom_command(OUTPUT "${gen}"
    COMMAND ${CMAKE_COMMAND} "-DOUT=${gen}" "-DFILES=${files_arg}"
      -P "${CMAKE_SOURCE_DIR}/host/sandbox/gen_builtin_approvals.cmake"
    DEPENDS ${plugins} "${CMAKE_SOURCE_DIR}/host/sandbox/gen_builtin_approvals.cmake"
    COMMENT "Built-in approvals: SHA-256 of the shipped plugins"
    VERBATIM)
  add_library(jr_builtin_approvals STATIC "${gen}")
  target_include_directories(jr_builtin_approvals PRIVATE "${CMAKE_SOURCE_DIR}/host/sandbox")
  target_link_libraries(jr_builtin_approvals PRIVATE nlohmann_json::nlohmann_json)
  target_link_libraries(jr_sandbox PUBLIC jr_builtin_approvals)
endfunction()
