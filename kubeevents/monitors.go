package kubeevents

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/pkg/restmapping"
)

// Errors returned by Monitors' methods; match them with errors.Is.
var (
	// ErrMonitorNotFound: no monitor has the given ID.
	ErrMonitorNotFound = errors.New("monitor not found")
	// ErrMonitorExists: AddMonitor got an ID that is already in use.
	ErrMonitorExists = errors.New("monitor already exists")
	// ErrInvalidConfig: a Config field is missing or malformed.
	ErrInvalidConfig = errors.New("invalid monitor config")
)

// Options configures Monitors. The zero value of every field but Config
// means its default.
type Options struct {
	// Config reaches the API server. Monitors copies it and sets its own
	// QPS and Burst on the copy. Required.
	Config *rest.Config
	// QPS and Burst limit Monitors' own client. Defaults: 50 and 100.
	QPS   float32
	Burst int
	// Mapper resolves bindings' kinds. The operator passes the process's
	// shared one, so that the API is discovered once. Default: one of the
	// Monitors' own over Config (restmapping.New).
	Mapper KindMapper
	// Logger receives the waiting for kinds, filter errors and informer
	// trouble. Default: discard.
	Logger logr.Logger
	// KindRetryMin and KindRetryMax bound the backoff with which a monitor
	// whose kind is not served yet retries discovery. Defaults: 1s and 1m.
	KindRetryMin time.Duration
	KindRetryMax time.Duration
}

func (o *Options) setDefaults() {
	if o.QPS == 0 {
		o.QPS = 50
	}
	if o.Burst == 0 {
		o.Burst = 100
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	if o.KindRetryMin == 0 {
		o.KindRetryMin = time.Second
	}
	if o.KindRetryMax == 0 {
		o.KindRetryMax = time.Minute
	}
	if o.KindRetryMax < o.KindRetryMin {
		o.KindRetryMax = o.KindRetryMin
	}
}

// Monitors runs one monitor per kubernetes binding and delivers their events,
// in order, on one channel. It is safe for concurrent use.
//
// Monitors may be added and started before Start; their events wait in
// memory until Start runs the delivery loop. Events are never dropped: while
// nobody reads Events, or while delivery is paused, they queue up.
type Monitors struct {
	opts Options
	// dynamic is the operator's own client.
	dynamic  dynamic.Interface
	resolver *kindResolver

	events chan Event
	// wake is signalled (never blocking) whenever pending or paused change.
	wake chan struct{}
	// sendMu is held by the delivery loop while it tries to send, so that
	// PauseHandleEvents can wait for an attempt in flight to end.
	sendMu sync.Mutex

	mu sync.Mutex
	// monitors by ID; guarded by mu.
	monitors map[string]*monitor
	// identities are the clients of the service accounts monitors act
	// as; guarded by mu.
	identities map[ServiceAccount]*identityClient
	// pending events not yet delivered, oldest first; guarded by mu.
	pending []Event
	// paused stops delivery; guarded by mu.
	paused bool
	// started tracks Start; guarded by mu.
	started bool

	// lifeMu orders monitor starts against Stop, so that no monitor starts
	// after Stop stopped them all. Lock order: lifeMu, then a monitor's
	// locks, then mu.
	lifeMu sync.Mutex
	// stopped is set by Stop; guarded by lifeMu.
	stopped bool
	// stop is closed by Stop; done is closed when Start returns.
	stop chan struct{}
	done chan struct{}
}

// New returns Monitors with their own client. It starts nothing.
func New(opts Options) (*Monitors, error) {
	if opts.Config == nil {
		return nil, errors.New("create kube events monitors: Options.Config is nil")
	}
	opts.setDefaults()
	cfg := rest.CopyConfig(opts.Config)
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create kube events monitors client: %w", err)
	}
	mapper := opts.Mapper
	if mapper == nil {
		if mapper, err = restmapping.New(cfg); err != nil {
			return nil, fmt.Errorf("create kube events monitors: %w", err)
		}
	}
	return &Monitors{
		opts:       opts,
		dynamic:    dyn,
		resolver:   &kindResolver{mapper: mapper},
		events:     make(chan Event),
		wake:       make(chan struct{}, 1),
		monitors:   map[string]*monitor{},
		identities: map[ServiceAccount]*identityClient{},
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}, nil
}

// Events returns the channel every monitor's events arrive on, in the order
// they happened per monitor. It is closed when Start returns.
func (m *Monitors) Events() <-chan Event { return m.events }

// Start delivers events until ctx is done or Stop is called, then stops
// every monitor and closes the Events channel; Monitors cannot start
// monitors afterwards. It implements
// controller-runtime's Runnable; it may be called once.
func (m *Monitors) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("start kube events monitors: already started")
	}
	m.started = true
	m.mu.Unlock()
	defer func() {
		m.markStopped()
		m.stopAllMonitors()
		close(m.events)
		close(m.done)
	}()

	for {
		m.mu.Lock()
		var next Event
		ready := !m.paused && len(m.pending) > 0
		if ready {
			next = m.pending[0]
		}
		m.mu.Unlock()

		if !ready {
			select {
			case <-m.wake:
				continue
			case <-m.stop:
				return nil
			case <-ctx.Done():
				return nil
			}
		}
		m.sendMu.Lock()
		select {
		case m.events <- next:
			m.mu.Lock()
			m.pending[0] = Event{}
			m.pending = m.pending[1:]
			m.mu.Unlock()
		case <-m.wake:
		case <-m.stop:
			m.sendMu.Unlock()
			return nil
		case <-ctx.Done():
			m.sendMu.Unlock()
			return nil
		}
		m.sendMu.Unlock()
	}
}

// NeedLeaderElection tells controller-runtime that hooks' bindings belong to
// the cluster role.
func (m *Monitors) NeedLeaderElection() bool { return true }

// Stop stops every monitor and, when Start runs, ends it and waits for it.
// Safe to call more than once.
func (m *Monitors) Stop() {
	m.markStopped()
	m.mu.Lock()
	started := m.started
	m.mu.Unlock()
	if started {
		<-m.done
		return
	}
	m.stopAllMonitors()
}

// markStopped refuses further monitor starts and ends Start's loop.
func (m *Monitors) markStopped() {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if !m.stopped {
		m.stopped = true
		close(m.stop)
	}
}

func (m *Monitors) stopAllMonitors() {
	m.mu.Lock()
	all := make([]*monitor, 0, len(m.monitors))
	for _, mon := range m.monitors {
		all = append(all, mon)
	}
	m.mu.Unlock()
	for _, mon := range all {
		mon.stop()
	}
}

// PauseHandleEvents holds back delivery: events that happen from now on
// are queued and delivered, in order, after ResumeHandleEvents. When it
// returns, no further event is handed to the Events channel.
func (m *Monitors) PauseHandleEvents() {
	m.mu.Lock()
	m.paused = true
	m.mu.Unlock()
	m.signal()
	// Wait for a send attempt in flight to end.
	m.sendMu.Lock()
	m.sendMu.Unlock() //nolint:staticcheck // an empty critical section is the point
}

// ResumeHandleEvents delivers the events queued during the pause, then new
// ones.
func (m *Monitors) ResumeHandleEvents() {
	m.mu.Lock()
	m.paused = false
	m.mu.Unlock()
	m.signal()
}

// Pending returns how many events wait for delivery.
func (m *Monitors) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}

func (m *Monitors) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// enqueue queues an event for delivery. Monitors call it while holding
// their own lock, so that events leave in the order their snapshots changed;
// the lock order is always monitor, then Monitors.
func (m *Monitors) enqueue(ev Event) {
	m.mu.Lock()
	m.pending = append(m.pending, ev)
	m.mu.Unlock()
	m.signal()
}

// AddMonitor validates cfg and registers a stopped monitor for it.
//
// Errors name the monitor and the field: ErrInvalidConfig for a missing or
// malformed field, a *FilterError for a jqFilter that does not compile, an
// *UnknownKindError for a kind the API server does not serve: missing from
// a served group version, or in a group served at other versions only
// ("events.k8s.io/v1beta1 is not served; served versions of events.k8s.io:
// v1"). A kind whose apiVersion names an API group that is not served at
// all is accepted: its CRD may be created later, and the started monitor
// waits for it, retrying discovery with backoff, logging that it waits and
// reporting why through WaitingForKind.
func (m *Monitors) AddMonitor(ctx context.Context, cfg Config) error {
	if cfg.ID == "" {
		return fmt.Errorf("add monitor for binding %q: field ID is empty: %w", cfg.Binding, ErrInvalidConfig)
	}
	wrap := func(err error) error { return fmt.Errorf("add monitor %s: %w", cfg.ID, err) }
	if err := validate(cfg); err != nil {
		return wrap(err)
	}
	flt, err := compileFilter(cfg.JqFilter)
	if err != nil {
		return wrap(err)
	}
	m.mu.Lock()
	_, exists := m.monitors[cfg.ID]
	m.mu.Unlock()
	if exists {
		return wrap(ErrMonitorExists)
	}

	mapping, err := m.resolver.resolve(cfg.APIVersion, cfg.Kind)
	var ke *UnknownKindError
	switch {
	case err == nil:
	case errors.As(err, &ke) && ke.MayAppearLater():
		m.opts.Logger.Info("kind not served yet; the monitor will wait for it", "monitor", cfg.ID, "apiVersion", cfg.APIVersion, "kind", cfg.Kind, "reason", ke.Error())
	default:
		return wrap(err)
	}
	if cfg.ServiceAccount != nil {
		sa := *cfg.ServiceAccount // the caller's Config stays its own
		cfg.ServiceAccount = &sa
	}
	dyn, err := m.clientFor(cfg.ServiceAccount)
	if err != nil {
		return wrap(err)
	}
	mon := newMonitor(m, cfg, flt, mapping, dyn)

	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.stopped {
		m.releaseClient(cfg.ServiceAccount)
		return wrap(errors.New("kube events monitors are stopped"))
	}
	m.mu.Lock()
	if _, exists := m.monitors[cfg.ID]; exists {
		m.mu.Unlock()
		m.releaseClient(cfg.ServiceAccount)
		return wrap(ErrMonitorExists)
	}
	m.monitors[cfg.ID] = mon
	m.mu.Unlock()
	return nil
}

func validate(cfg Config) error {
	if cfg.Kind == "" {
		return fmt.Errorf("field kind is empty: expected a kind such as ConfigMap: %w", ErrInvalidConfig)
	}
	if cfg.LabelSelector != nil {
		if _, err := metav1.LabelSelectorAsSelector(cfg.LabelSelector); err != nil {
			return fmt.Errorf("field labelSelector: %v: %w", err, ErrInvalidConfig)
		}
	}
	if cfg.FieldSelector != "" {
		if _, err := fields.ParseSelector(cfg.FieldSelector); err != nil {
			return fmt.Errorf("field fieldSelector %q: %v: %w", cfg.FieldSelector, err, ErrInvalidConfig)
		}
	}
	if cfg.Namespace != nil && cfg.Namespace.LabelSelector != nil {
		if _, err := metav1.LabelSelectorAsSelector(cfg.Namespace.LabelSelector); err != nil {
			return fmt.Errorf("field namespace.labelSelector: %v: %w", err, ErrInvalidConfig)
		}
	}
	for _, n := range cfg.NameSelector {
		if n == "" {
			return fmt.Errorf("field nameSelector.matchNames holds an empty name: %w", ErrInvalidConfig)
		}
	}
	if cfg.Namespace != nil {
		for _, n := range cfg.Namespace.MatchNames {
			if n == "" {
				return fmt.Errorf("field namespace.nameSelector.matchNames holds an empty name: %w", ErrInvalidConfig)
			}
		}
	}
	for _, ev := range cfg.ExecuteHookOnEvent {
		switch ev {
		case WatchEventAdded, WatchEventModified, WatchEventDeleted:
		default:
			return fmt.Errorf("field executeHookOnEvent holds %q: expected Added, Modified or Deleted: %w", ev, ErrInvalidConfig)
		}
	}
	if cfg.ResyncPeriod < 0 {
		return fmt.Errorf("field resynchronizationPeriod is negative (%s): %w", cfg.ResyncPeriod, ErrInvalidConfig)
	}
	if sa := cfg.ServiceAccount; sa != nil && (sa.Namespace == "" || sa.Name == "") {
		return fmt.Errorf("field serviceAccount %q: expected a namespace and a name: %w", sa.String(), ErrInvalidConfig)
	}
	return nil
}

func (m *Monitors) get(id string) (*monitor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mon, ok := m.monitors[id]
	if !ok {
		return nil, fmt.Errorf("monitor %s: %w", id, ErrMonitorNotFound)
	}
	return mon, nil
}

// StartMonitor starts watching for the monitor. It returns at once; the
// monitor lists its objects (or first waits for its kind to be served), then
// sends one Synchronization event, then an Event per change. Starting a
// running monitor does nothing.
func (m *Monitors) StartMonitor(id string) error {
	mon, err := m.get(id)
	if err != nil {
		return err
	}
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.stopped {
		return fmt.Errorf("start monitor %s: kube events monitors are stopped", id)
	}
	mon.start()
	return nil
}

// StopMonitor stops watching and waits for the monitor's goroutines. Its
// snapshot is emptied; a later StartMonitor lists again and sends a new
// Synchronization event. Events already queued are still delivered.
func (m *Monitors) StopMonitor(id string) error {
	mon, err := m.get(id)
	if err != nil {
		return err
	}
	mon.stop()
	return nil
}

// RemoveMonitor stops the monitor and forgets it.
func (m *Monitors) RemoveMonitor(id string) error {
	m.mu.Lock()
	mon, ok := m.monitors[id]
	delete(m.monitors, id)
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("remove monitor %s: %w", id, ErrMonitorNotFound)
	}
	mon.stop()
	m.releaseClient(mon.cfg.ServiceAccount)
	return nil
}

// Snapshot returns the monitor's current objects sorted by namespace and
// name: copies of whole objects, or only filter results when
// KeepFullObjectsInMemory is false. Empty for a stopped monitor, nil for an
// unknown one.
func (m *Monitors) Snapshot(id string) []ObjectAndFilterResult {
	mon, err := m.get(id)
	if err != nil {
		return nil
	}
	return mon.snapshot()
}

// Synced reports whether the monitor has listed its objects (and sent its
// Synchronization event when configured to).
func (m *Monitors) Synced(id string) bool {
	mon, err := m.get(id)
	if err != nil {
		return false
	}
	return mon.isSynced()
}

// WaitingForKind says why a started monitor waits for its kind to be
// served (the API server's answer to its last discovery attempt); it is
// empty while the monitor watches, before its first attempt, after it
// stopped, and for an unknown monitor.
func (m *Monitors) WaitingForKind(id string) string {
	mon, err := m.get(id)
	if err != nil {
		return ""
	}
	return mon.waitingForKind()
}

// Forbidden returns, while the API server refuses a list or watch of the
// monitor to its identity, that refusal (a *ForbiddenError naming the
// verb, resource, namespace and service account); nil while it watches,
// before its first attempt, after it stopped, and for an unknown monitor.
// The monitor keeps retrying meanwhile.
func (m *Monitors) Forbidden(id string) error {
	mon, err := m.get(id)
	if err != nil {
		return nil
	}
	if fe := mon.forbidden(); fe != nil {
		return fe
	}
	return nil
}

// MonitorIDs returns the IDs of every monitor, sorted.
func (m *Monitors) MonitorIDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.monitors))
	for id := range m.monitors {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// labelSelector returns the parsed selector or labels.Everything.
func labelSelector(s *metav1.LabelSelector) labels.Selector {
	if s == nil {
		return labels.Everything()
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return labels.Nothing() // validated in AddMonitor; unreachable
	}
	return sel
}

var namespacesGVR = corev1.SchemeGroupVersion.WithResource("namespaces")

func labelsSet(m map[string]string) labels.Set { return labels.Set(m) }
