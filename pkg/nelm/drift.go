package nelm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	helmkube "helm.sh/helm/v3/pkg/kube"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/resource"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// ObjectDrift names the fields of one object of a release whose live
// values differ from the release's manifest.
type ObjectDrift struct {
	Object
	// Paths are JSON pointers of the fields that differ, sorted.
	Paths []string
}

// driftMode is pkg's spec.driftDetection.mode, "disabled" when unset.
func driftMode(pkg Package) v1alpha1.DriftDetectionMode {
	if pkg.DriftDetection == nil || pkg.DriftDetection.Mode == "" {
		return v1alpha1.DriftDetectionDisabled
	}
	return pkg.DriftDetection.Mode
}

// validatePolicy checks what the CRD schema checks too, for a Package
// made without it: the remediation's retries and strategy, the drift mode
// and each ignore path.
func validatePolicy(pkg Package) error {
	if r := pkg.InstallRemediation; r != nil && r.Retries < 0 {
		return fmt.Errorf("%w %s: spec.install.remediation.retries is %d; want 0 or more", ErrInvalidPackage, pkg, r.Retries)
	}
	if r := pkg.UpgradeRemediation; r != nil {
		if r.Retries < 0 {
			return fmt.Errorf("%w %s: spec.upgrade.remediation.retries is %d; want 0 or more", ErrInvalidPackage, pkg, r.Retries)
		}
		switch r.Strategy {
		case "", v1alpha1.RemediationRollback, v1alpha1.RemediationUninstall:
		default:
			return fmt.Errorf("%w %s: spec.upgrade.remediation.strategy is %q; want rollback or uninstall", ErrInvalidPackage, pkg, r.Strategy)
		}
	}
	switch driftMode(pkg) {
	case v1alpha1.DriftDetectionDisabled, v1alpha1.DriftDetectionWarn, v1alpha1.DriftDetectionEnabled:
	default:
		return fmt.Errorf("%w %s: spec.driftDetection.mode is %q; want disabled, warn or enabled", ErrInvalidPackage, pkg, pkg.DriftDetection.Mode)
	}
	if pkg.DriftDetection == nil {
		return nil
	}
	for i, rule := range pkg.DriftDetection.Ignore {
		for j, p := range rule.Paths {
			if _, err := pointerTokens(p); err != nil {
				return fmt.Errorf("%w %s: spec.driftDetection.ignore[%d].paths[%d]: %w", ErrInvalidPackage, pkg, i, j, err)
			}
		}
	}
	return nil
}

// fieldManager is the field manager Helm writes the release's objects as
// (helm.sh/helm/v3/pkg/kube), so drift is judged and corrected as the
// release's own manager.
func fieldManager() string {
	if helmkube.ManagedFieldsManager != "" {
		return helmkube.ManagedFieldsManager
	}
	if len(os.Args) == 0 || os.Args[0] == "" {
		return "unknown"
	}
	return filepath.Base(os.Args[0])
}

// modifiedObjects compares each object of manifest with the cluster: a
// server-side apply dry run of the manifest's object (forcing ownership,
// as the release's field manager) shows what the object would be if the
// manifest were applied now; the fields where that differs from the live
// object drifted. Fields the package's ignore rules name are left out.
// Missing objects are not reported here (missingObjects does). When
// correct is set, each drifted object is applied for real, which sets its
// fields back and takes them over; no Helm revision is made.
func (op *operation) modifiedObjects(ctx context.Context, manifest string, correct bool) ([]ObjectDrift, error) {
	infos, err := op.manifestObjects(manifest)
	if err != nil {
		return nil, err
	}
	var drifted []ObjectDrift
	force := true
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		obj := Object{Kind: info.Mapping.GroupVersionKind.Kind, Namespace: info.Namespace, Name: info.Name}
		ignored := ignoredPaths(op.pkg.DriftDetection, obj)
		desired, err := toMap(info.Object)
		if err != nil {
			return nil, fmt.Errorf("read %s from the manifest: %w", obj, err)
		}
		for _, p := range ignored {
			desired = removePointer(desired, p)
		}
		body, err := json.Marshal(desired)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", obj, err)
		}
		h := resource.NewHelper(info.Client, info.Mapping).WithFieldManager(fieldManager())
		live, err := h.Get(info.Namespace, info.Name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", obj, err)
		}
		dry, err := h.DryRun(true).Patch(info.Namespace, info.Name, types.ApplyPatchType, body, &metav1.PatchOptions{Force: &force})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("server-side apply dry run of %s: %w", obj, err)
		}
		paths, err := diffObjects(live, dry, ignored)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", obj, err)
		}
		if len(paths) == 0 {
			continue
		}
		drifted = append(drifted, ObjectDrift{Object: obj, Paths: paths})
		if correct {
			h := resource.NewHelper(info.Client, info.Mapping).WithFieldManager(fieldManager())
			if _, err := h.Patch(info.Namespace, info.Name, types.ApplyPatchType, body, &metav1.PatchOptions{Force: &force}); err != nil {
				return drifted, fmt.Errorf("correct %s (server-side apply): %w", obj, err)
			}
		}
	}
	return drifted, nil
}

// ignoredPaths are the JSON pointers dd's rules ignore in obj.
func ignoredPaths(dd *v1alpha1.DriftDetection, obj Object) []string {
	if dd == nil {
		return nil
	}
	var paths []string
	for _, rule := range dd.Ignore {
		if t := rule.Target; t != nil &&
			((t.Kind != "" && t.Kind != obj.Kind) || (t.Name != "" && t.Name != obj.Name) || (t.Namespace != "" && t.Namespace != obj.Namespace)) {
			continue
		}
		paths = append(paths, rule.Paths...)
	}
	return paths
}

// diffObjects lists the JSON pointers at which live and dry differ,
// leaving out what the API server keeps for itself (managedFields,
// resourceVersion, generation, status) and the ignored paths.
func diffObjects(live, dry any, ignored []string) ([]string, error) {
	a, err := toMap(live)
	if err != nil {
		return nil, err
	}
	b, err := toMap(dry)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range []map[string]any{a, b} {
		delete(m, "status")
		if md, ok := m["metadata"].(map[string]any); ok {
			for _, k := range []string{"managedFields", "resourceVersion", "generation"} {
				delete(md, k)
			}
		}
	}
	for _, p := range ignored {
		a = removePointer(a, p)
		b = removePointer(b, p)
	}
	diffValues("", a, b, &out)
	slices.Sort(out)
	return out, nil
}

// diffValues appends to out the pointers below prefix where a and b
// differ: the deepest differing map key or list item, or the whole list
// when the lengths differ.
func diffValues(prefix string, a, b any, out *[]string) {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			*out = append(*out, pointerOrRoot(prefix))
			return
		}
		keys := make([]string, 0, len(av)+len(bv))
		for k := range av {
			keys = append(keys, k)
		}
		for k := range bv {
			if _, ok := av[k]; !ok {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			diffValues(prefix+"/"+escapeToken(k), av[k], bv[k], out)
		}
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			*out = append(*out, pointerOrRoot(prefix))
			return
		}
		for i := range av {
			diffValues(prefix+"/"+strconv.Itoa(i), av[i], bv[i], out)
		}
	default:
		if !reflect.DeepEqual(a, b) {
			*out = append(*out, pointerOrRoot(prefix))
		}
	}
}

func pointerOrRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

func escapeToken(t string) string {
	return strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
}

// pointerTokens splits a JSON pointer (RFC 6901) into its unescaped
// reference tokens.
func pointerTokens(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("JSON pointer %q must start with '/', e.g. /spec/replicas", p)
	}
	parts := strings.Split(p[1:], "/")
	for i, t := range parts {
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || (t[j+1] != '0' && t[j+1] != '1')) {
				return nil, fmt.Errorf("JSON pointer %q: '~' must be followed by 0 ('~') or 1 ('/')", p)
			}
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// removePointer removes the value at pointer p from m, if there is one.
func removePointer(m map[string]any, p string) map[string]any {
	tokens, err := pointerTokens(p)
	if err != nil || len(tokens) == 0 {
		return m
	}
	if v, ok := removeAt(m, tokens).(map[string]any); ok {
		return v
	}
	return m
}

func removeAt(v any, tokens []string) any {
	t, rest := tokens[0], tokens[1:]
	switch c := v.(type) {
	case map[string]any:
		child, ok := c[t]
		switch {
		case !ok:
		case len(rest) == 0:
			delete(c, t)
		default:
			c[t] = removeAt(child, rest)
		}
		return c
	case []any:
		i, err := strconv.Atoi(t)
		if err != nil || i < 0 || i >= len(c) {
			return c
		}
		if len(rest) == 0 {
			return append(c[:i:i], c[i+1:]...)
		}
		c[i] = removeAt(c[i], rest)
		return c
	}
	return v
}

// toMap turns an object into its JSON form as a map.
func toMap(obj any) (map[string]any, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// describeDrift names at most a few objects and a few paths of each, for
// an Event or a log line.
func describeDrift(drifted []ObjectDrift) string {
	const maxObjects, maxPaths = 5, 4
	var parts []string
	for i, d := range drifted {
		if i == maxObjects {
			parts = append(parts, fmt.Sprintf("and %d more objects", len(drifted)-maxObjects))
			break
		}
		paths := d.Paths
		more := ""
		if len(paths) > maxPaths {
			more = fmt.Sprintf(" and %d more", len(paths)-maxPaths)
			paths = paths[:maxPaths]
		}
		parts = append(parts, fmt.Sprintf("%s at %s%s", d.Object, strings.Join(paths, ", "), more))
	}
	return strings.Join(parts, "; ")
}

// checkModified looks for modified objects of the release's deployed
// revision when pkg's drift detection asks for it, records what it found
// (an Event and a log line) and, in mode enabled, corrects it. It makes
// no Event when nothing differs; either way the outcome goes to Drifts,
// unless the check failed before it found anything.
func (s *Service) checkModified(ctx context.Context, pkg Package, op *operation, revision int, manifest string) ([]ObjectDrift, error) {
	mode := driftMode(pkg)
	if mode == v1alpha1.DriftDetectionDisabled {
		return nil, nil
	}
	correct := mode == v1alpha1.DriftDetectionEnabled
	drifted, err := op.modifiedObjects(ctx, manifest, correct)
	if len(drifted) > 0 {
		what := describeDrift(drifted)
		s.opts.Logger.Info("release objects drifted from the manifest", "package", pkg.Key(), "release", pkg.Name,
			"revision", revision, "mode", string(mode), "drift", what)
		switch {
		case !correct:
			s.event(pkg, true, ReasonDriftDetected, "Release %s revision %d: %s differ from the manifest (spec.driftDetection.mode warn: not corrected)",
				pkg.Name, revision, what)
		case err == nil:
			s.event(pkg, false, ReasonDriftCorrected, "Release %s revision %d: set back %s to the manifest's values",
				pkg.Name, revision, what)
		default:
			s.event(pkg, true, ReasonDriftDetected, "Release %s revision %d: %s differ from the manifest; correcting failed: %v",
				pkg.Name, revision, what, err)
		}
	}
	if err == nil || len(drifted) > 0 {
		s.send(Drift{Package: pkg, Revision: revision, Checked: true, Modified: drifted, Mode: mode, Corrected: correct && err == nil})
	}
	if err != nil {
		return drifted, fmt.Errorf("drift detection of release %s: %w", pkg, err)
	}
	return drifted, nil
}
