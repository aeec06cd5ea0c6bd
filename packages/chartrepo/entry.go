package chartrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	helmchart "helm.sh/helm/v3/pkg/chart"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/gadgetpm/gadgetpm/packages/archive"
)

// Errors of index entries and of the charts they point at, matched with
// errors.Is.
var (
	// ErrBadIndexEntry: an index entry Helm reads without complaint but
	// that cannot be installed as written (a version YAML reads as a
	// number, no urls).
	ErrBadIndexEntry = errors.New("malformed index entry")
	// ErrBadDigest: an index entry's digest is not a string, or not
	// sha256:<64 hex digits> or 64 bare hex digits.
	ErrBadDigest = errors.New("malformed digest in index entry")
	// ErrChartMismatch: the archive holds a chart whose name or version
	// differs from the index entry (or OCI reference) it was fetched as.
	ErrChartMismatch = errors.New("archive holds another chart")
)

var hex64 = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// entryKey is a chart name and version as Helm's index loader reads them.
type entryKey struct{ name, version string }

// entryProblems finds index entries that Helm's loader accepts but
// silently changes or cannot use. Helm decodes index.yaml with
// sigs.k8s.io/yaml, which reads YAML with go.yaml.in/yaml/v2 and then
// converts each scalar to its Go field's type: an unquoted all-digit
// digest is a YAML integer, so 64 zeros arrive as the string "0" (while
// `version: 1.10` fails the whole file without naming the entry).
// Decoding the same bytes with the same YAML
// reader into untyped values shows what the file really says; decoding
// the versions as Helm does gives the key Helm's entry is found by.
//
// It is best effort: a file Helm's loader reads but these decodes do not
// yields no problems.
func entryProblems(data []byte) map[entryKey]error {
	var raw struct {
		Entries map[any][]map[any]any `yaml:"entries"`
	}
	if err := yamlv2.Unmarshal(data, &raw); err != nil {
		return nil
	}
	var asHelm struct {
		Entries map[string][]struct {
			Version string `json:"version"`
		} `json:"entries"`
	}
	if err := sigsyaml.Unmarshal(data, &asHelm); err != nil {
		return nil
	}
	out := map[entryKey]error{}
	for k, entries := range raw.Entries {
		name := fmt.Sprint(k)
		versions := asHelm.Entries[name]
		for i, e := range entries {
			if i >= len(versions) {
				break
			}
			key := entryKey{name, versions[i].Version}
			if _, seen := out[key]; seen {
				continue
			}
			if err := checkEntry(e); err != nil {
				out[key] = fmt.Errorf("%w %s %s: %s", err.sentinel, name, key.version, err.detail)
			}
		}
	}
	return out
}

// joinProblems joins the messages of problems, sorted.
func joinProblems(problems map[entryKey]error) string {
	msgs := make([]string, 0, len(problems))
	for _, err := range problems {
		msgs = append(msgs, err.Error())
	}
	sort.Strings(msgs)
	return strings.Join(msgs, "; ")
}

type entryError struct {
	sentinel error
	detail   string
}

// checkEntry checks the fields of one raw index entry that Helm does not.
func checkEntry(e map[any]any) *entryError {
	if v, ok := e["version"]; ok && v != nil {
		if _, isString := v.(string); !isString {
			return &entryError{ErrBadIndexEntry, fmt.Sprintf("field version is not a string: YAML reads it as the %s %v; quote it (version: \"<semver>\")", yamlType(v), v)}
		}
	}
	if d, ok := e["digest"]; ok && d != nil {
		s, isString := d.(string)
		if !isString {
			return &entryError{ErrBadDigest, fmt.Sprintf("field digest is not a string: YAML reads it as the %s %v; quote it (digest: \"sha256:<64 hex digits>\")", yamlType(d), d)}
		}
		if s != "" && !hex64.MatchString(strings.TrimPrefix(s, "sha256:")) {
			return &entryError{ErrBadDigest, fmt.Sprintf("field digest %q is not sha256:<64 hex digits> or 64 hex digits", s)}
		}
	}
	if urls, _ := e["urls"].([]any); len(urls) == 0 {
		return &entryError{ErrBadIndexEntry, "field urls is missing or empty: the entry names no archive to download"}
	}
	return nil
}

func yamlType(v any) string {
	switch v.(type) {
	case int, int64, uint64:
		return "integer"
	case float64:
		return "floating-point number"
	case bool:
		return "boolean"
	case []any:
		return "list"
	case map[any]any:
		return "mapping"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// Malformed lists the entries a package cannot be installed from because
// the index writes them wrongly (see ErrBadIndexEntry, ErrBadDigest), one
// sentence each, by package name and newest version first.
func (i *Index) Malformed() []string {
	var out []string
	for _, n := range i.Names() {
		for _, v := range i.Packages[n] {
			if v.Problem != nil {
				out = append(out, v.Problem.Error())
			}
		}
	}
	return out
}

// CheckChart checks that the Chart.yaml in a names the chart a.Name at
// a.Version, the name and version it was listed (or, for OCI, tagged) as;
// otherwise the error wraps ErrChartMismatch and names both. An archive
// without a readable Chart.yaml passes: extracting and loading it say
// precisely what is wrong.
func (c *Client) CheckChart(ctx context.Context, a *Archive) error {
	data, err := archive.ReadFile(ctx, bytes.NewReader(a.Data), "Chart.yaml", archive.Limits{StripComponents: 1})
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if err != nil {
		return nil // no Chart.yaml within bounds, or not a tar: Install and Load report it
	}
	// Helm's loader reads Chart.yaml the same way.
	var md helmchart.Metadata
	if err := sigsyaml.Unmarshal(data, &md); err != nil {
		return nil // Load reports it with the file and line
	}
	var diffs []string
	if md.Name != a.Name {
		diffs = append(diffs, fmt.Sprintf("name %q", md.Name))
	}
	if md.Version != a.Version {
		diffs = append(diffs, fmt.Sprintf("version %q", md.Version))
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	listed := fmt.Sprintf("the index lists %s %s", a.Name, a.Version)
	if c.IsOCI() {
		listed = fmt.Sprintf("it was pulled as %s %s (name = last path element, version = tag)", a.Name, a.Version)
	}
	return fmt.Errorf("%w: %s, but the Chart.yaml in %s says %s; the repository must serve each chart under its own name and version",
		ErrChartMismatch, listed, a.Filename, strings.Join(diffs, " and "))
}
