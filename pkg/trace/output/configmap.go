package output

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
)

// DefaultConfigMapLimit is the default ConfigMapOptions.Limit: 900 KiB.
const DefaultConfigMapLimit = 900 << 10

// MaxConfigMapLimit is the largest ConfigMapOptions.Limit: the API server
// rejects ConfigMaps whose data passes 1 MiB, and the summary and keys need
// room.
const MaxConfigMapLimit = 1<<20 - 1<<10

// runIDPattern is what a RunID must look like: it goes into a label value
// and an object name.
var runIDPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// maxRunIDLen keeps a RunID a valid label value.
const maxRunIDLen = maxLabelValueLen

// ConfigMapOptions configures a ConfigMap sink.
type ConfigMapOptions struct {
	// Client creates the ConfigMap. Required.
	Client client.Client
	// Trace owns the ConfigMap (controller owner reference); its namespace,
	// name and UID are required.
	Trace *gadgetv1alpha1.Trace
	// RunID is unique per run of the Trace, e.g. the start time
	// "20261206t072800z" or a counter: lowercase letters, digits and '-',
	// starting and ending with a letter or digit, at most 63 characters.
	// Required.
	RunID string
	// Limit bounds the events kept, in bytes of JSON lines. 0 (or less)
	// means DefaultConfigMapLimit; at most MaxConfigMapLimit.
	Limit int
	// Scheme knows the Trace type, for the owner reference. Required.
	Scheme *runtime.Scheme
}

// ConfigMap writes one run's events into a ConfigMap owned by the Trace,
// created on Close: data key "events.json" holds the latest events as JSON
// lines within Limit bytes and "summary.json" holds {"events":N,"dropped":M}
// for the whole run. Labels LabelTrace and LabelRun select it; the
// annotation AnnotationTruncated is "true" when older events were dropped.
// Its name is ConfigMapName(trace, RunID).
//
// Stats.Dropped counts the events no longer kept (pushed out by newer ones,
// or larger than Limit on their own).
//
// Write and Close follow Sink's contract; Stats is safe to call
// concurrently with Write.
type ConfigMap struct {
	opts ConfigMapOptions
	name string

	// k holds the kept events, each followed by '\n'; Close closes it.
	k bounded

	closeOnce sync.Once
	ref       string
	closeErr  error
}

// NewConfigMap checks opts and returns a ConfigMap sink. It does not touch
// the API server.
func NewConfigMap(opts ConfigMapOptions) (*ConfigMap, error) {
	switch {
	case opts.Client == nil:
		return nil, fmt.Errorf("configmap output: no client")
	case opts.Scheme == nil:
		return nil, fmt.Errorf("configmap output: no scheme")
	case opts.Trace == nil:
		return nil, fmt.Errorf("configmap output: no trace")
	case opts.Trace.Namespace == "" || opts.Trace.Name == "" || opts.Trace.UID == "":
		return nil, fmt.Errorf("configmap output: trace %s/%s: namespace, name and uid are required", opts.Trace.Namespace, opts.Trace.Name)
	case len(opts.RunID) > maxRunIDLen || !runIDPattern.MatchString(opts.RunID):
		return nil, fmt.Errorf("configmap output for trace %s/%s: run id %q: expected 1 to %d lowercase letters, digits or '-', starting and ending with a letter or digit",
			opts.Trace.Namespace, opts.Trace.Name, opts.RunID, maxRunIDLen)
	case opts.Limit > MaxConfigMapLimit:
		return nil, fmt.Errorf("configmap output for trace %s/%s: limit %d: expected at most %d bytes", opts.Trace.Namespace, opts.Trace.Name, opts.Limit, MaxConfigMapLimit)
	}
	if opts.Limit <= 0 {
		opts.Limit = DefaultConfigMapLimit
	}
	return &ConfigMap{
		opts: opts,
		name: ConfigMapName(opts.Trace.Name, opts.RunID),
		k:    bounded{w: newWindow(opts.Limit, 0, '\n')},
	}, nil
}

// Write keeps a copy of b, dropping the oldest events to stay within the
// limit. It returns ErrClosed after Close.
func (c *ConfigMap) Write(b []byte) error { return c.k.write(b) }

// Stats returns the events written and the events no longer kept.
func (c *ConfigMap) Stats() Stats { return c.k.stats() }

// Close creates the run's ConfigMap and returns its name. A ConfigMap of
// that name left by an earlier attempt of the same run (same Trace, same
// RunID) is replaced; any other one is an error. Later calls return the
// first call's result.
func (c *ConfigMap) Close(ctx context.Context) (string, error) {
	c.closeOnce.Do(func() {
		c.ref, c.closeErr = c.create(ctx)
	})
	return c.ref, c.closeErr
}

func (c *ConfigMap) create(ctx context.Context) (string, error) {
	tr := c.opts.Trace
	cm, err := c.build()
	if err != nil {
		return "", err
	}
	err = c.opts.Client.Create(ctx, cm)
	if apierrors.IsAlreadyExists(err) {
		err = c.replace(ctx, cm)
	}
	if err != nil {
		return "", fmt.Errorf("create configmap %s/%s for trace %s: %w", cm.Namespace, cm.Name, tr.Name, err)
	}
	return cm.Name, nil
}

// build freezes the events and returns the ConfigMap to create.
func (c *ConfigMap) build() (*corev1.ConfigMap, error) {
	tr := c.opts.Trace
	c.k.mu.Lock()
	c.k.closed = true
	events := string(c.k.w.live())
	st := Stats{Events: c.k.events, Dropped: c.k.w.dropped}
	// Release the arena, keep the counts.
	c.k.w.buf, c.k.w.ends, c.k.w.start, c.k.w.head = nil, nil, 0, 0
	c.k.mu.Unlock()

	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: tr.Namespace,
			Name:      c.name,
			Labels: map[string]string{
				LabelTrace: TraceLabelValue(tr.Name),
				LabelRun:   c.opts.RunID,
			},
		},
		Data: map[string]string{
			KeyEvents:  events,
			KeySummary: `{"events":` + strconv.FormatInt(st.Events, 10) + `,"dropped":` + strconv.FormatInt(st.Dropped, 10) + `}`,
		},
	}
	if st.Dropped > 0 {
		cm.Annotations = map[string]string{AnnotationTruncated: "true"}
	}
	if err := controllerutil.SetControllerReference(tr, cm, c.opts.Scheme); err != nil {
		return nil, fmt.Errorf("configmap %s/%s for trace %s: set owner: %w", tr.Namespace, c.name, tr.Name, err)
	}
	return cm, nil
}

// replace overwrites an existing ConfigMap of the same run; it refuses one
// not controlled by the Trace or labelled with another run.
func (c *ConfigMap) replace(ctx context.Context, cm *corev1.ConfigMap) error {
	var old corev1.ConfigMap
	if err := c.opts.Client.Get(ctx, client.ObjectKeyFromObject(cm), &old); err != nil {
		return err
	}
	if !metav1.IsControlledBy(&old, c.opts.Trace) || old.Labels[LabelRun] != c.opts.RunID {
		return fmt.Errorf("a configmap of that name exists and does not belong to run %s of this trace", c.opts.RunID)
	}
	cm.ResourceVersion = old.ResourceVersion
	return c.opts.Client.Update(ctx, cm)
}

// PruneConfigMaps deletes the oldest run ConfigMaps of tr beyond keep (by
// creation time, then name). Only ConfigMaps in tr's namespace carrying
// tr's LabelTrace and controlled by tr count. keep must not be negative.
//
// With a cached client the cache must watch ConfigMaps; a stale list only
// delays pruning to the next call.
func PruneConfigMaps(ctx context.Context, c client.Client, tr *gadgetv1alpha1.Trace, keep int) error {
	if keep < 0 {
		return fmt.Errorf("prune configmaps of trace %s/%s: keep %d: expected 0 or more", tr.Namespace, tr.Name, keep)
	}
	var list corev1.ConfigMapList
	if err := c.List(ctx, &list, client.InNamespace(tr.Namespace), client.MatchingLabels{LabelTrace: TraceLabelValue(tr.Name)}); err != nil {
		return fmt.Errorf("prune configmaps of trace %s/%s: list: %w", tr.Namespace, tr.Name, err)
	}
	owned := make([]*corev1.ConfigMap, 0, len(list.Items))
	for i := range list.Items {
		if metav1.IsControlledBy(&list.Items[i], tr) {
			owned = append(owned, &list.Items[i])
		}
	}
	if len(owned) <= keep {
		return nil
	}
	sort.Slice(owned, func(i, j int) bool {
		ti, tj := owned[i].CreationTimestamp, owned[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return owned[i].Name < owned[j].Name
	})
	for _, cm := range owned[:len(owned)-keep] {
		err := c.Delete(ctx, cm, client.Preconditions{UID: &cm.UID})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("prune configmaps of trace %s/%s: delete %s: %w", tr.Namespace, tr.Name, cm.Name, err)
		}
	}
	return nil
}
