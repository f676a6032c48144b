# Compiles a plugin's schema.sql (its own tables: plugins/<name>/schema.sql) into the plugin at
# configure time, as host/store/migrations/embed.cmake does for the host's migrations.
# jr_plugin_schema(<target>), called from plugins/<name>/CMakeLists.txt, writes
# <binary dir>/plugin_schema/<name>/schema.sql.inc: the file's text as one raw string literal,
# included where the plugin defines its DDL constant:
#
#   const char* const kSchemaSql =
#   #include "<name>/schema.sql.inc"
#       ;
#
# The include is rooted by the plugin's name like every plugin include (plugins/README.md), on
# <target>'s PRIVATE include path. CMake re-runs when schema.sql is edited (CMAKE_CONFIGURE_DEPENDS),
# and the .inc is only rewritten when its content changes (configure_file COPYONLY), so a configure
# run for another reason rebuilds nothing.
include_guard(GLOBAL)

function(jr_plugin_schema target)
  get_filename_component(plugin "${CMAKE_CURRENT_SOURCE_DIR}" NAME)
  set(sql "${CMAKE_CURRENT_SOURCE_DIR}/schema.sql")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${sql}")
  file(READ "${sql}" text)
  if(text MATCHES "\\)JRSQL\"")
    message(FATAL_ERROR "${sql} contains the raw-string delimiter )JRSQL\"")
  endif()
  set(root "${CMAKE_BINARY_DIR}/plugin_schema")
  set(tmp "${CMAKE_CURRENT_BINARY_DIR}/schema.sql.inc.tmp")
  file(WRITE "${tmp}"
    "// Generated from plugins/${plugin}/schema.sql by plugins/embed_schema.cmake. Do not edit.\n"
    "R\"JRSQL(${text})JRSQL\"\n")
  configure_file("${tmp}" "${root}/${plugin}/schema.sql.inc" COPYONLY)
  target_include_directories(${target} PRIVATE "${root}")
endfunction()
