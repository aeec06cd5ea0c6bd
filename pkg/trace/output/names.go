package output

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Label and annotation keys on run ConfigMaps.
const (
	// LabelTrace carries the Trace's name (see TraceLabelValue).
	LabelTrace = "gadget.kinvolk.io/trace"
	// LabelRun carries the run's RunID.
	LabelRun = "gadget.kinvolk.io/run"
	// AnnotationTruncated is "true" when older events of the run were
	// dropped to fit the limit.
	AnnotationTruncated = "gadget.kinvolk.io/truncated"
)

// Data keys of run ConfigMaps.
const (
	// KeyEvents holds the kept events as JSON lines, oldest first.
	KeyEvents = "events.json"
	// KeySummary holds {"events":N,"dropped":M} for the whole run.
	KeySummary = "summary.json"
)

const (
	// maxNameLen is the longest object name (a DNS subdomain).
	maxNameLen = 253
	// maxLabelValueLen is the longest label value.
	maxLabelValueLen = 63
	// hashLen is how many hex digits of a sha256 shorten a name.
	hashLen = 8
)

// shorten returns s when it has at most max bytes, otherwise a prefix of s,
// "-" and hashLen hex digits of s's sha256, max bytes in all. The prefix
// loses trailing '-' and '.' so the result stays a valid name.
func shorten(s string, max int) string {
	if len(s) <= max {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	prefix := strings.TrimRight(s[:max-hashLen-1], "-.")
	return prefix + "-" + hex.EncodeToString(sum[:])[:hashLen]
}

// TraceLabelValue is the value of LabelTrace for a Trace named name: the
// name itself when it fits a label value (63 characters), otherwise a
// prefix and a hash of it.
func TraceLabelValue(name string) string { return shorten(name, maxLabelValueLen) }

// ConfigMapName is the name of the ConfigMap of run runID of the Trace
// named trace: "<trace>-<runID>", with the trace part shortened and hashed
// when the whole would pass 253 characters.
func ConfigMapName(trace, runID string) string {
	return shorten(trace, maxNameLen-len(runID)-1) + "-" + runID
}
