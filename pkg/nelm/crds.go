package nelm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	helmchart "helm.sh/helm/v3/pkg/chart"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gadgetpm/gadgetpm/pkg/identity"
)

// Event reasons of InstallCRDs.
const (
	ReasonCRDCreated = "CRDCreated"
	ReasonCRDFailed  = "CRDFailed"
)

// crdPoll is how often InstallCRDs looks whether a CRD is established.
const crdPoll = 200 * time.Millisecond

var crdGVR = apiextensionsv1.SchemeGroupVersion.WithResource("customresourcedefinitions")

// InstallCRDs creates the CustomResourceDefinitions of ch's crds/ folder
// and of its subcharts' (in Helm's order), with Helm's semantics: a CRD
// that exists is left as it is, never updated, and no CRD is ever deleted,
// not even when the package is removed. It then waits (Options.Timeout)
// until every CRD of the chart is Established and its versions are served
// by discovery, so that hooks and monitors started afterwards find its
// kinds. A chart without crds/ costs nothing.
//
// Files in crds/ are not templates. A document that is not an
// apiextensions.k8s.io/v1 CustomResourceDefinition fails with
// ErrInvalidChart naming the file and the document; so does a CRD the API
// server refuses as invalid or whose names it does not accept
// (NamesAccepted=False). Each CRD
// created is recorded as an Event on the package.
func (s *Service) InstallCRDs(ctx context.Context, pkg Package, ch *helmchart.Chart) error {
	if err := s.installCRDs(ctx, pkg, ch); err != nil {
		reason := ReasonCRDFailed
		if r := identity.Reason(err); r != "" {
			reason = r
		}
		s.event(pkg, true, reason, "%v", err)
		return err
	}
	return nil
}

func (s *Service) installCRDs(ctx context.Context, pkg Package, ch *helmchart.Chart) error {
	if ch == nil || ch.Metadata == nil {
		return fmt.Errorf("install CRDs of %s: %w: no chart or no Chart.yaml metadata", pkg, ErrInvalidChart)
	}
	crds, err := chartCRDs(ch)
	if err != nil {
		return fmt.Errorf("install CRDs of %s: %w", pkg, err)
	}
	if len(crds) == 0 {
		return nil
	}
	if err := s.checkServiceAccount(ctx, "install CRDs of", pkg); err != nil {
		return err
	}
	// Created as the package's identity, as Helm would create them; waited
	// for with the Service's own, which reads CRDs and discovery.
	cl, err := s.clientsFor(pkg)
	if err != nil {
		return fmt.Errorf("install CRDs of %s: %w", pkg, err)
	}
	ri := cl.dynamic.Resource(crdGVR)
	created := false
	for _, c := range crds {
		_, err := ri.Create(ctx, c.obj, metav1.CreateOptions{FieldManager: "gadgetpm"})
		switch {
		case identity.IsForbidden(err):
			return forbidden("install CRDs of", pkg, fmt.Errorf("install CRDs of %s: create CustomResourceDefinition %s from %s: %w", pkg, c.obj.GetName(), c.file, err))
		case err == nil:
			created = true
			s.event(pkg, false, ReasonCRDCreated, "Created CustomResourceDefinition %s from %s", c.obj.GetName(), c.file)
		case apierrors.IsAlreadyExists(err):
			s.opts.Logger.V(1).Info("CRD exists; left as it is", "package", pkg.Key(), "crd", c.obj.GetName(), "file", c.file)
		case apierrors.IsInvalid(err):
			// The chart's content is wrong; retrying cannot help.
			return fmt.Errorf("install CRDs of %s: %w: create CustomResourceDefinition %s from %s: %v", pkg, ErrInvalidChart, c.obj.GetName(), c.file, err)
		default:
			return fmt.Errorf("install CRDs of %s: create CustomResourceDefinition %s from %s: %w", pkg, c.obj.GetName(), c.file, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout(ctx))
	defer cancel()
	for _, c := range crds {
		if err := s.waitCRD(ctx, c); err != nil {
			return fmt.Errorf("install CRDs of %s: %w", pkg, err)
		}
	}
	if created {
		// The shared discovery cache and mapper predate the new kinds:
		// forget them now rather than at the next miss.
		s.own.access.discovery.Invalidate()
		meta.MaybeResetRESTMapper(s.own.access.mapper)
	}
	return nil
}

// chartCRD is one CustomResourceDefinition read from a crds/ file.
type chartCRD struct {
	// file is the path within the chart, subcharts' prefixed with
	// charts/<name>/.
	file string
	obj  *unstructured.Unstructured
}

// chartCRDs reads every document of ch's crds/ files, and its subcharts'.
func chartCRDs(ch *helmchart.Chart) ([]chartCRD, error) {
	var out []chartCRD
	for _, f := range ch.CRDObjects() {
		file := strings.TrimPrefix(f.Filename, ch.ChartFullPath()+"/")
		dec := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(f.File.Data), 4096)
		for doc := 1; ; doc++ {
			var m map[string]any
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %s document %d is not YAML or JSON: %v", ErrInvalidChart, file, doc, err)
			}
			if len(m) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: m}
			if u.GroupVersionKind() != apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition") {
				return nil, fmt.Errorf("%w: %s document %d is apiVersion %q kind %q: expected an apiextensions.k8s.io/v1 CustomResourceDefinition (other objects belong in templates/)",
					ErrInvalidChart, file, doc, u.GetAPIVersion(), u.GetKind())
			}
			if u.GetName() == "" {
				return nil, fmt.Errorf("%w: %s document %d: field metadata.name is empty: expected <plural>.<group>", ErrInvalidChart, file, doc)
			}
			out = append(out, chartCRD{file: file, obj: u})
		}
	}
	return out, nil
}

// waitCRD waits until c is Established and discovery serves each of its
// served versions.
func (s *Service) waitCRD(ctx context.Context, c chartCRD) error {
	name := c.obj.GetName()
	tick := time.NewTicker(crdPoll)
	defer tick.Stop()
	var why string
	for {
		ready, reason, err := s.crdReady(ctx, name)
		if err != nil {
			return err
		}
		if ready {
			return nil
		}
		why = reason
		select {
		case <-ctx.Done():
			return fmt.Errorf("CustomResourceDefinition %s from %s is not ready: %s: %w", name, c.file, why, ctx.Err())
		case <-tick.C:
		}
	}
}

// crdReady reports whether the CRD is Established and served, or why not;
// an error only for what waiting cannot cure.
func (s *Service) crdReady(ctx context.Context, name string) (bool, string, error) {
	u, err := s.own.dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if ctx.Err() != nil {
			return false, err.Error(), nil
		}
		return false, "", fmt.Errorf("read CustomResourceDefinition %s: %w", name, err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &crd); err != nil {
		return false, "", fmt.Errorf("read CustomResourceDefinition %s: %w", name, err)
	}
	established := false
	for _, c := range crd.Status.Conditions {
		switch {
		case c.Type == apiextensionsv1.NamesAccepted && c.Status == apiextensionsv1.ConditionFalse:
			return false, "", fmt.Errorf("%w: CustomResourceDefinition %s: names not accepted: %s", ErrInvalidChart, name, c.Message)
		case c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue:
			established = true
		}
	}
	if !established {
		return false, "not Established yet", nil
	}
	for _, v := range crd.Spec.Versions {
		if !v.Served {
			continue
		}
		gv := crd.Spec.Group + "/" + v.Name
		list, err := s.own.clientset.Discovery().ServerResourcesForGroupVersion(gv)
		if err != nil || !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == crd.Spec.Names.Plural }) {
			return false, fmt.Sprintf("%s %s not in discovery yet", gv, crd.Spec.Names.Plural), nil
		}
	}
	return true, "", nil
}
