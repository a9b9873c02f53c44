#!/usr/bin/env bash
# No two source files of the extension call each other, directly or round
# a loop: from the built objects' symbols (nm), every file's calls into
# other files form a graph that must have no cycle.  Prints the graph, and
# the files left in a cycle when there is one.  Usage: test/call_graph.sh
# [SRC_DIR] (default: src beside this script's folder, already built).
set -euo pipefail
src=${1:-"$(dirname "$0")/../src"}
objs=("$src"/*.o)
[ -e "${objs[0]}" ] || { echo "no objects in $src: build first"; exit 1; }
edges=$(for o in "${objs[@]}"; do nm "$o" | sed "s|^|$(basename "$o" .o) |"; done | awk '
	NF == 4 && $3 ~ /^[TDBR]$/ { def[$4] = $1 }
	NF == 3 && $2 == "U" { use[++n] = $1 " " $3 }
	END {
		for (i = 1; i <= n; i++) {
			split(use[i], p, " ")
			if ((p[2] in def) && def[p[2]] != p[1]) print p[1], def[p[2]]
		}
	}' | sort -u)
echo "$edges" | awk '{ out[$1] = out[$1] " " $2 } END { for (f in out) print f " ->" out[f] }' | sort
# Peel off files that call no remaining file, or that no remaining file
# calls, until none is left: what stays is a cycle.
remaining=$edges
while :; do
	callers=$(echo "$remaining" | awk 'NF { print $1 }' | sort -u)
	callees=$(echo "$remaining" | awk 'NF { print $2 }' | sort -u)
	loose=$(comm -3 <(echo "$callers") <(echo "$callees") | tr -d '\t' | awk NF)
	[ -n "$loose" ] || break
	remaining=$(echo "$remaining" | awk -v s="$loose" 'BEGIN { split(s, a, "\n"); for (i in a) drop[a[i]] = 1 }
		NF && !($1 in drop) && !($2 in drop)')
done
if [ -n "$(echo "$remaining" | awk NF)" ]; then
	echo "not ok - files in a call cycle: $(echo "$remaining" | awk '{ print $1 }' | sort -u | tr '\n' ' ')"
	exit 1
fi
echo "ok - no source file calls one that calls it back (${#objs[@]} files)"
