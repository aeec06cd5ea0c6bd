# Shared functions of the hook-demo hooks. This file has no execute bit and
# no "#!" line, so gadgetpm does not treat it as a hook; the hooks source it:
#
#   . "$(dirname "$0")/lib/common.sh"
#
# Only POSIX sh and the basic tools every Linux machine has (cat, printf,
# sed, grep, tr, sort, date) are used: no jq, no kubectl.

# json_string TEXT prints TEXT as a JSON string literal. Binding contexts
# are compact JSON written by gadgetpm, so they hold no raw control
# characters; newlines are dropped, backslashes and quotes escaped.
json_string() {
	printf '%s' "$1" | tr -d '\n\r' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$/"/'
	# an empty input gives no line for sed to work on
	[ -n "$1" ] || printf '""'
}

# metric NAME ACTION VALUE [LABELS_JSON] appends one metric line to
# $METRICS_PATH in the shell-operator format.
metric() {
	if [ -n "${4:-}" ]; then
		printf '{"name":"%s","action":"%s","value":%s,"labels":%s}\n' "$1" "$2" "$3" "$4" >>"$METRICS_PATH"
	else
		printf '{"name":"%s","action":"%s","value":%s}\n' "$1" "$2" "$3" >>"$METRICS_PATH"
	fi
}

# values_patch OP PATH VALUE_JSON appends one JSON patch operation to
# $VALUES_JSON_PATCH_PATH. Paths are rooted at the package's values key,
# hookDemo (the package name in lower camel case).
values_patch() {
	printf '{"op":"%s","path":"%s","value":%s}\n' "$1" "$2" "$3" >>"$VALUES_JSON_PATCH_PATH"
}

# say MESSAGE logs one line; gadgetpm records it with the package, hook and
# binding.
say() {
	printf 'hook-demo %s: %s\n' "$(basename "$0")" "$1"
}
