# `cmake --install <build> --prefix P` lays out a usable jobrunner installation:
#   P/bin/runner, P/bin/jr-worker              the host and its sandbox worker helper
#   P/lib/jobrunner/plugins/*.so               the shipped plugins (those that were built)
#   P/include/jobrunner/*.h *.hpp              the SDK headers
#   P/lib/cmake/JobRunnerSDK/                  the CMake package (find_package(JobRunnerSDK))
#   P/share/doc/jobrunner/writing-a-plugin.md  the plugin author's guide
# Included once, at the end of the top-level CMakeLists.txt (after every target exists).
include_guard(GLOBAL)
include(CMakePackageConfigHelpers)

set(_jr_sdk_dir "${CMAKE_SOURCE_DIR}/sdk")

# The package version is the ABI version, read from abi.h so the two never disagree.
file(STRINGS "${_jr_sdk_dir}/include/jobrunner/abi.h" _jr_abi_lines
  REGEX "^#define JR_ABI_(MAJOR|MINOR) [0-9]+")
string(REGEX MATCH "JR_ABI_MAJOR ([0-9]+)" _m "${_jr_abi_lines}")
set(_jr_abi_major ${CMAKE_MATCH_1})
string(REGEX MATCH "JR_ABI_MINOR ([0-9]+)" _m "${_jr_abi_lines}")
set(_jr_abi_minor ${CMAKE_MATCH_1})
set(JR_SDK_VERSION "${_jr_abi_major}.${_jr_abi_minor}" CACHE INTERNAL "plugin SDK (ABI) version")

write_basic_package_version_file(
  "${CMAKE_BINARY_DIR}/sdk/JobRunnerSDKConfigVersion.cmake"
  VERSION ${JR_SDK_VERSION} COMPATIBILITY SameMajorVersion)

install(DIRECTORY "${_jr_sdk_dir}/include/jobrunner" DESTINATION include
  FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
install(FILES
  "${_jr_sdk_dir}/cmake/JobRunnerSDKConfig.cmake"
  "${_jr_sdk_dir}/cmake/JobRunnerSDKFunctions.cmake"
  "${_jr_sdk_dir}/cmake/exports.map"
  "${CMAKE_BINARY_DIR}/sdk/JobRunnerSDKConfigVersion.cmake"
  DESTINATION lib/cmake/JobRunnerSDK)
if(EXISTS "${CMAKE_SOURCE_DIR}/docs/writing-a-plugin.md")
  install(FILES "${CMAKE_SOURCE_DIR}/docs/writing-a-plugin.md" DESTINATION share/doc/jobrunner)
endif()

install(TARGETS runner RUNTIME DESTINATION bin)
if(TARGET jr-worker)
  install(TARGETS jr-worker RUNTIME DESTINATION bin)
endif()

# The shipped plugins: every MODULE library whose output lands in JR_PLUGIN_OUTPUT_DIR (what
# jr_plugin() does by default; test plugins go elsewhere). OPTIONAL: a partial build installs
# the plugins it has.
function(_jr_collect_plugins dir out)
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
    _jr_collect_plugins("${sub}" sub_found)
    list(APPEND found ${sub_found})
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()
_jr_collect_plugins("${CMAKE_SOURCE_DIR}" _jr_shipped_plugins)
if(_jr_shipped_plugins)
  install(TARGETS ${_jr_shipped_plugins} LIBRARY DESTINATION lib/jobrunner/plugins OPTIONAL)
endif()
