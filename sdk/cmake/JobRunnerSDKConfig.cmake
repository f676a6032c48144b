# CMake package of the jobrunner plugin SDK: find_package(JobRunnerSDK [1.1] REQUIRED).
# Installed to <prefix>/lib/cmake/JobRunnerSDK/ by `cmake --install` of a jobrunner build.
# The package version is the plugin ABI version (major.minor); a plugin asking for 1.0 accepts
# any 1.x SDK (SameMajorVersion), because minor versions only append to the ABI.
#
# Provides
#   JobRunnerSDK::sdk        headers (jobrunner/abi.h, plugin.hpp, ...) + nlohmann_json
#   JobRunnerSDK::testing    the above + what jobrunner/testing.hpp needs (dlopen, threads)
#   jobrunner_add_plugin()   see JobRunnerSDKFunctions.cmake
#   JobRunnerSDK_INCLUDE_DIR, JobRunnerSDK_EXPORTS_MAP,
#   JobRunnerSDK_RUNNER      the installed `runner` binary
#   JobRunnerSDK_PLUGIN_DIR  the installed plugins directory (<prefix>/lib/jobrunner/plugins)
include(CMakeFindDependencyMacro)
find_dependency(nlohmann_json 3)
find_dependency(Threads)

get_filename_component(_jr_sdk_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(JobRunnerSDK_INCLUDE_DIR "${_jr_sdk_prefix}/include")
set(JobRunnerSDK_RUNNER "${_jr_sdk_prefix}/bin/runner")
set(JobRunnerSDK_PLUGIN_DIR "${_jr_sdk_prefix}/lib/jobrunner/plugins")
if(NOT EXISTS "${JobRunnerSDK_INCLUDE_DIR}/jobrunner/abi.h")
  set(JobRunnerSDK_FOUND FALSE)
  set(JobRunnerSDK_NOT_FOUND_MESSAGE "jobrunner/abi.h not found under ${JobRunnerSDK_INCLUDE_DIR}")
  return()
endif()

if(NOT TARGET JobRunnerSDK::sdk)
  add_library(JobRunnerSDK::sdk INTERFACE IMPORTED)
  set_target_properties(JobRunnerSDK::sdk PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${JobRunnerSDK_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES nlohmann_json::nlohmann_json)
endif()
if(NOT TARGET JobRunnerSDK::testing)
  add_library(JobRunnerSDK::testing INTERFACE IMPORTED)
  set_target_properties(JobRunnerSDK::testing PROPERTIES
    INTERFACE_LINK_LIBRARIES "JobRunnerSDK::sdk;Threads::Threads;${CMAKE_DL_LIBS}"
    INTERFACE_COMPILE_FEATURES cxx_std_17)
endif()

include("${CMAKE_CURRENT_LIST_DIR}/JobRunnerSDKFunctions.cmake")
unset(_jr_sdk_prefix)
