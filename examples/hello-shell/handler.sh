#!/bin/sh
# hello-shell: a Brume function in EXEC mode. brume-init runs this script once per invocation,
# with the event (JSON) on stdin; what it prints on stdout is the response, what it prints on
# stderr goes to the function's log, and a non-zero exit status is a function error
# (Runtime.ExitError). It needs nothing but busybox: sh and awk.
#
#   {"name": "Brume"}  ->  {"message": "Hello, Brume!"}
#   {}                 ->  {"message": "Hello, world!"}
#   {"fail": true}     ->  exit status 1, a message on stderr
#
# One awk reads the whole event and prints the answer: every process started costs time in a
# microVM (tens of milliseconds under TCG), so the script starts a single one. It exits 1,
# printing nothing, when the event asks for a failure.
#
# This is no JSON parser: it takes the first "name" whose value is a plain string. A name
# holding an escaped quote or backslash is not matched, and the answer then says "world", which
# keeps the output valid JSON whatever the event holds.
awk '
  { event = event $0 "\n" }
  END {
    if (event ~ /"fail"[ \t\r\n]*:[ \t\r\n]*true/) exit 1
    name = "world"
    if (match(event, /"name"[ \t\r\n]*:[ \t\r\n]*"[^"\\]*"/)) {
      value = substr(event, RSTART, RLENGTH)
      sub(/^"name"[ \t\r\n]*:[ \t\r\n]*"/, "", value)
      sub(/"$/, "", value)
      if (value != "") name = value
    }
    printf "{\"message\": \"Hello, %s!\"}", name
  }'
status=$?
if [ "$status" -eq 1 ]; then
  echo "hello-shell: the event asked me to fail" >&2
fi
exit "$status"
