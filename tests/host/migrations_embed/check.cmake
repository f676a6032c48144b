# Run by test_migrations_embed (CMakeLists.txt here).
file(REMOVE_RECURSE "${WORK}")
set(failures 0)

# configure_case(<name> <expect: ok or a regex of the error> <file> <content> ...): "@SC@" in a
# content stands for a semicolon (a CMake list separator).
function(configure_case name expect)
  set(dir "${WORK}/${name}")
  file(MAKE_DIRECTORY "${dir}/sql")
  file(WRITE "${dir}/sql/privileges.sql" "-- privileges\nSELECT 1\n")
  set(args ${ARGN})
  while(args)
    list(POP_FRONT args f content)
    string(REPLACE "@SC@" ";" content "${content}")
    file(WRITE "${dir}/sql/${f}" "${content}")
  endwhile()
  file(WRITE "${dir}/CMakeLists.txt"
    "cmake_minimum_required(VERSION 3.20)\nproject(p C)\ninclude(\"${EMBED}\")\n"
    "add_library(t STATIC t.c)\njr_embed_migrations(t DIR \"${dir}/sql\")\n")
  string(ASCII 59 sc)
  file(WRITE "${dir}/t.c" "int t(void) { return 0${sc} }\n")
  execute_process(COMMAND ${CMAKE_COMMAND} -S "${dir}" -B "${dir}/build"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(expect STREQUAL "ok")
    if(NOT rc EQUAL 0)
      message(SEND_ERROR "${name}: expected to configure, got:\n${err}")
      set(failures 1 PARENT_SCOPE)
      return()
    endif()
    file(READ "${dir}/build/jr_migrations/jr_migrations.inc" inc)
    if(NOT inc MATCHES "\n\\{1, \"first\", R\"JRSQL\\(-- migration 1: first\nCREATE TABLE a \\(x int\\);\n\\)JRSQL\"\\},\n\\{3, \"third; with \\\\\"quotes\\\\\"\", ")
      message(SEND_ERROR "${name}: unexpected table:\n${inc}")
      set(failures 1 PARENT_SCOPE)
      return()
    endif()
    message(STATUS "${name}: configured; versions 1 and 3 in order, name escaped")
  else()
    string(REGEX REPLACE "[ \n]+" " " flat "${err}")
    if(rc EQUAL 0 OR NOT flat MATCHES "${expect}")
      message(SEND_ERROR "${name}: expected an error matching '${expect}', got rc=${rc}:\n${err}")
      set(failures 1 PARENT_SCOPE)
      return()
    endif()
    message(STATUS "${name}: refused: ${expect}")
  endif()
endfunction()

configure_case(good ok
  "003_third.sql" "-- migration 3: third@SC@ with \"quotes\"\nSELECT 3@SC@\n"
  "001_first.sql" "-- migration 1: first\nCREATE TABLE a (x int)@SC@\n")
configure_case(header_disagrees "002_b.sql:1: says migration 7, the file name says 2"
  "002_b.sql" "-- migration 7: b\nSELECT 1@SC@\n")
configure_case(no_header "004_c.sql:1: the first line must be"
  "004_c.sql" "CREATE TABLE c (x int)@SC@\n")
configure_case(bad_name "x_d.sql: a migration is named NNN_name.sql"
  "x_d.sql" "-- migration 1: d\nSELECT 1@SC@\n")
configure_case(duplicate "005_f.sql: a second migration 5"
  "005_e.sql" "-- migration 5: e\nSELECT 1@SC@\n" "005_f.sql" "-- migration 5: f\nSELECT 1@SC@\n")
configure_case(delimiter "006_g.sql contains the raw-string delimiter"
  "006_g.sql" "-- migration 6: g\nSELECT ')JRSQL\"'@SC@\n")
if(failures)
  message(FATAL_ERROR "the migrations' embedding did not behave as described")
endif()
