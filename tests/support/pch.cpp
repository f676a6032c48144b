// The translation unit the tests' precompiled header is built with (tests/CMakeLists.txt):
// every test binary reuses that header, so this file only has to exist.
