#!/bin/sh
# Prints the greeting and the page; `greet serve` serves the page with busybox httpd.
if [ "$1" = serve ]; then exec httpd -f -p 8080 -h /app/site; fi
echo "$GREETING (running as $(id -un), in $(pwd))"
sed -e 's/<[^>]*>//g' /app/site/index.html | grep -v '^ *$'
