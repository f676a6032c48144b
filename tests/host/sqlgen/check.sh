#!/usr/bin/env bash
# Run by test_sqlgen: jr_sqlgen (host/store/sql/sqlgen.cpp) on good and bad SQL files. A good
# set becomes the expected header; each bad one stops with FILE:LINE and what is wrong.
set -uo pipefail
gen=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

# expect_error NAME REGEX FILE...: the generator fails and says REGEX.
expect_error() {
  local name=$1 want=$2
  shift 2
  if "$gen" "$work/out.hpp" "$@" 2>"$work/err"; then
    echo "FAIL $name: generated, expected an error matching: $want"; failures=1; return
  fi
  if ! grep -Eq -- "$want" "$work/err"; then
    echo "FAIL $name: expected an error matching: $want; got: $(cat "$work/err")"; failures=1; return
  fi
  echo "ok   $name: $(cat "$work/err")"
}

cat >"$work/a.sql" <<'SQL'
-- The file's header: comments only.

-- The body of a claim; @FAST@ is the variant.
-- fragment: body
SELECT @FAST@ AS fast,
       'a -- not a comment' AS text

-- name: pick :prepared
-- a comment that is not sent
{{body FAST=true}};

-- name: pick_slow
{{body FAST=false}}
SQL
cat >"$work/b.sql" <<'SQL'
-- name: note
SELECT {{msg WHY='two words (and parentheses)'}}

-- fragment: msg
@WHY@ AS why
SQL
if ! "$gen" "$work/out.hpp" "$work/a.sql" "$work/b.sql" 2>"$work/err"; then
  echo "FAIL good: $(cat "$work/err")"; failures=1
else
  for want in \
    'inline constexpr Statement pick\{"pick", R"JRSQL\(SELECT true AS fast,' \
    "       'a -- not a comment' AS text\)JRSQL\", true\};" \
    'inline constexpr Statement pick_slow\{"pick_slow", R"JRSQL\(SELECT false AS fast,' \
    "inline constexpr Statement note\{\"note\", R\"JRSQL\(SELECT 'two words \(and parentheses\)' AS why\)JRSQL\", false\};" \
    '^    &pick,$' '^    &pick_slow,$' '^    &note,$' \
    'inline constexpr const char body\[\] = R"JRSQL\(SELECT @FAST@ AS fast,'; do
    if ! grep -Eq -- "$want" "$work/out.hpp"; then
      echo "FAIL good: the header lacks: $want"; failures=1
    fi
  done
  if grep -q "comment that is not sent\|header" "$work/out.hpp"; then
    echo "FAIL good: a comment line reached the SQL"; failures=1
  fi
  # Unchanged input: the header is not rewritten (nothing recompiles).
  before=$(stat -c %Y.%N "$work/out.hpp"); sleep 1.1
  "$gen" "$work/out.hpp" "$work/a.sql" "$work/b.sql"
  [ "$(stat -c %Y.%N "$work/out.hpp")" = "$before" ] || { echo "FAIL good: rewritten"; failures=1; }
  echo "ok   good: 3 statements, fragment arguments put in, comments dropped"
fi

printf -- '-- name: a\nSELECT {{nope}}\n' >"$work/c.sql"
expect_error unknown-fragment 'c\.sql:1: \{\{nope\}\}: no such fragment' "$work/c.sql"
printf -- '-- name: a\nSELECT 1\n' >"$work/d1.sql"
printf -- '-- fragment: x\n1\n-- name: a\nSELECT 2\n' >"$work/d2.sql"
expect_error duplicate 'd2\.sql:3: a is already defined at .*d1\.sql:1' "$work/d1.sql" "$work/d2.sql"
printf -- '-- fragment: f\nSELECT @FAST@\n-- name: a\n{{f}}\n' >"$work/e.sql"
expect_error missing-argument 'e\.sql:3: @FAST@ is not given' "$work/e.sql"
printf -- '-- fragment: f\nSELECT 1\n-- name: a\n{{f FAST=true}}\n' >"$work/f.sql"
expect_error unused-argument 'f\.sql:3: \{\{f\}\}: the fragment has no @FAST@' "$work/f.sql"
printf -- '-- header\nSELECT 1\n-- name: a\nSELECT 2\n' >"$work/g.sql"
expect_error sql-before-directive 'g\.sql:2: SQL before the first' "$work/g.sql"
printf -- '-- name: Bad-Name\nSELECT 1\n' >"$work/h.sql"
expect_error bad-directive "h\.sql:1: a directive is '-- name: NAME'" "$work/h.sql"
printf -- '-- name: a\n-- only a comment\n\n-- name: b\nSELECT 1\n' >"$work/i.sql"
expect_error empty 'i\.sql:1: statement a is empty' "$work/i.sql"
printf -- '-- fragment: loop\n{{loop}}\n-- name: a\n{{loop}}\n' >"$work/j.sql"
expect_error self-include 'nested more than 8 deep' "$work/j.sql"
printf -- '-- fragment: f :prepared\nSELECT 1\n' >"$work/k.sql"
expect_error prepared-fragment 'k\.sql:1: a fragment cannot be :prepared' "$work/k.sql"
printf -- '-- name: a\nSELECT 1 {{ f }}\n' >"$work/l.sql"
expect_error stray-braces "l\.sql:1: a '\{\{' that is not" "$work/l.sql"

exit $failures
