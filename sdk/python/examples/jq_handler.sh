#!/bin/sh
# A handler in shell with jq: the protocol is just JSON lines on stdin/stdout.
# Answers every job with its payload's "text" upper-cased, reports progress, and fails
# permanently when there is no text. Needs jq granted: [plugins.exec.sandbox] exec =
# ["/usr/bin/jq", "/usr/bin/tr"] (the handler runs programs of its own).
#
#   [[plugins.exec.kinds]]
#   kind = "upper"
#   command = ["/usr/bin/sh", "/srv/handlers/jq_handler.sh"]   # /usr/bin: /bin is not in the sandbox root
set -u
echo '{"type":"ready","protocol":1}'
while IFS= read -r line; do
  type=$(printf '%s' "$line" | jq -r '.type')
  [ "$type" = "job" ] || continue          # cancel/enqueued messages: nothing to do here
  text=$(printf '%s' "$line" | jq -r '.payload.text // empty')
  if [ -z "$text" ]; then
    echo '{"type":"error","permanent":true,"message":"payload.text is missing"}'
    continue
  fi
  echo '{"type":"progress","percent":50,"step":"upper"}'
  upper=$(printf '%s' "$text" | tr '[:lower:]' '[:upper:]')
  jq -cn --arg u "$upper" '{type:"result",result:{upper:$u}}'
done
