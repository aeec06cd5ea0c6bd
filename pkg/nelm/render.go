package nelm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"

	helmaction "helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	helmchartutil "helm.sh/helm/v3/pkg/chartutil"
)

// checksumLen is how many hex digits of the sha256 go into LabelChecksum;
// a label value holds at most 63 characters.
const checksumLen = 48

// RenderOptions say what to render for.
type RenderOptions struct {
	// Namespace of the release. Default "default".
	Namespace string
	// ReleaseName, checked against Helm's rules. Default: the chart's name.
	ReleaseName string
	// KubeVersion the chart is rendered for, e.g. "v1.36.3"; it is checked
	// against the chart's kubeVersion constraint. Default: Helm's built-in
	// version.
	KubeVersion string
	// APIVersions available in addition to Helm's built-in ones, as
	// "group/version" or "group/version/Kind".
	APIVersions []string
}

// Rendered is a chart rendered client-side.
type Rendered struct {
	// Manifest holds the rendered objects as a YAML stream.
	Manifest string
	// Hooks are the rendered Helm hook manifests, by path.
	Hooks map[string]string
	// Checksum is a hex digest over the chart's name and version, the values
	// and everything rendered; two renders with the same checksum would make
	// the same release.
	Checksum string
}

// Render renders ch with values without contacting a cluster, for lint and
// `gadgetpm package render`. Files under gadget/ are not passed to
// templates, the same as when installing. Errors name the template file and
// line, or the value that fails values.schema.json.
func Render(ch *helmchart.Chart, values map[string]any, opts RenderOptions) (*Rendered, error) {
	prepared, err := prepareChart(ch)
	if err != nil {
		return nil, err
	}
	return render(prepared, copyValues(values), opts)
}

// render renders a chart from prepareChart; it changes neither argument.
func render(ch *helmchart.Chart, values map[string]any, opts RenderOptions) (*Rendered, error) {
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.ReleaseName == "" {
		opts.ReleaseName = ch.Name()
	}
	if err := helmchartutil.ValidateReleaseName(opts.ReleaseName); err != nil {
		return nil, fmt.Errorf("render chart %s: release name %q: %w", ch.Name(), opts.ReleaseName, err)
	}
	cfg := &helmaction.Configuration{Log: func(string, ...any) {}}
	inst := helmaction.NewInstall(cfg)
	inst.ClientOnly = true
	inst.DryRun = true
	inst.Replace = true
	inst.DisableHooks = false
	inst.Namespace = opts.Namespace
	inst.ReleaseName = opts.ReleaseName
	inst.APIVersions = opts.APIVersions
	if opts.KubeVersion != "" {
		kv, err := helmchartutil.ParseKubeVersion(opts.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("render chart %s: kube version %q: %w", ch.Name(), opts.KubeVersion, err)
		}
		inst.KubeVersion = kv
	}
	if values == nil {
		values = map[string]any{}
	}
	// Helm changes the chart and values it renders; give it copies.
	rel, err := inst.RunWithContext(context.Background(), cloneChart(ch), copyValues(values))
	if err != nil {
		return nil, fmt.Errorf("render chart %s: %w", ch.Name(), err)
	}
	out := &Rendered{Manifest: rel.Manifest, Hooks: map[string]string{}}
	for _, h := range rel.Hooks {
		out.Hooks[h.Path] = h.Manifest
	}
	sum, err := checksum(ch, values, out)
	if err != nil {
		return nil, fmt.Errorf("render chart %s: %w", ch.Name(), err)
	}
	out.Checksum = sum
	return out, nil
}

// Render renders ch for pkg with the live cluster's version and API
// versions, as Upgrade would.
func (s *Service) Render(ctx context.Context, pkg Package, ch *helmchart.Chart, values map[string]any) (*Rendered, error) {
	if err := validatePackage(pkg); err != nil {
		return nil, err
	}
	caps, err := s.liveCapabilities(ctx)
	if err != nil {
		return nil, err
	}
	return Render(ch, values, liveRenderOptions(pkg, caps))
}

// liveCapabilities reads the server version and API versions through the
// shared discovery cache, refreshed first as Helm does, so kinds from CRDs
// installed since the last operation count.
func (s *Service) liveCapabilities(ctx context.Context) (*helmchartutil.Capabilities, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dc := s.own.access.discovery
	dc.Invalidate()
	v, err := dc.ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("read server version: %w", err)
	}
	apis, err := helmaction.GetVersionSet(dc)
	if err != nil {
		return nil, fmt.Errorf("read server API versions: %w", err)
	}
	return &helmchartutil.Capabilities{
		APIVersions: apis,
		KubeVersion: helmchartutil.KubeVersion{Version: v.GitVersion, Major: v.Major, Minor: v.Minor},
		HelmVersion: helmchartutil.DefaultCapabilities.HelmVersion,
	}, nil
}

// liveRenderOptions renders for pkg with the cluster's capabilities.
func liveRenderOptions(pkg Package, caps *helmchartutil.Capabilities) RenderOptions {
	return RenderOptions{
		Namespace:   pkg.Namespace,
		ReleaseName: pkg.Name,
		KubeVersion: caps.KubeVersion.Version,
		APIVersions: caps.APIVersions,
	}
}

// checksum digests what decides a release's content. Values are hashed in
// canonical JSON (sorted keys) so map order does not matter.
func checksum(ch *helmchart.Chart, values map[string]any, r *Rendered) (string, error) {
	h := sha256.New()
	vals, err := canonicalJSON(values)
	if err != nil {
		return "", err
	}
	write := func(parts ...string) {
		for _, p := range parts {
			// Length prefixes keep "ab"+"c" and "a"+"bc" apart.
			fmt.Fprintf(h, "%d:", len(p))
			_, _ = io.WriteString(h, p)
		}
	}
	write(ch.Name(), ch.Metadata.Version, string(vals), r.Manifest)
	paths := make([]string, 0, len(r.Hooks))
	for p := range r.Hooks {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		write(p, r.Hooks[p])
	}
	return hex.EncodeToString(h.Sum(nil))[:checksumLen], nil
}

// canonicalJSON encodes v with sorted keys and numbers normalised, so values
// read back from a release (float64 numbers) compare equal to the ones given.
func canonicalJSON(v map[string]any) ([]byte, error) {
	if v == nil {
		v = map[string]any{}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode values: %w", err)
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return nil, fmt.Errorf("decode values: %w", err)
	}
	// encoding/json sorts map keys, so this is canonical.
	return json.Marshal(generic)
}

// templateLocation matches the file and line Helm puts in template errors:
// "template: NAME/templates/x.yaml:6:12: executing ..." and
// "parse error at (NAME/templates/x.yaml:1): ...", subcharts included.
var templateLocation = regexp.MustCompile(`[A-Za-z0-9_.-]+/((?:charts/[^:()\s]+/)?templates/[^:()\s]+):(\d+)`)

// TemplateLocation returns the chart file (relative to the chart's root,
// e.g. "templates/cm.yaml") and 1-based line a Render error points at, if
// it names one.
func TemplateLocation(err error) (file string, line int, ok bool) {
	if err == nil {
		return "", 0, false
	}
	m := templateLocation.FindStringSubmatch(err.Error())
	if m == nil {
		return "", 0, false
	}
	line, convErr := strconv.Atoi(m[2])
	if convErr != nil {
		return "", 0, false
	}
	return m[1], line, true
}
