package trace

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/ebpfstage"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

// Errors of attach, matched with errors.Is.
var (
	errBusy     = errors.New("the trace already runs")
	errStopping = errors.New("the node's trace controller is stopping")
)

// runKey identifies a loaded program on the node: Traces with equal keys
// share it.
type runKey struct{ digest, params string }

// sharedRun is one gadget run on the node and the Traces subscribed to it.
type sharedRun struct {
	c      *Controller
	id     string
	key    runKey
	shared bool
	pkg    types.NamespacedName
	cancel context.CancelFunc

	// subs is the current subscriber list, replaced (never modified) under
	// c.mu, read without a lock on the event path.
	subs atomic.Pointer[[]*subscriber]
	// records counts what the gadget delivered to the fan-out, before any
	// Trace's container filter: what the kernel let through.
	records atomic.Int64
	// mntns is the gadget's kernel mount-namespace filter when the run
	// has it on (set by the fan-out's Instantiate), which syncMntNs keeps
	// in step with the containers its Traces select
	mntns atomic.Pointer[ebpfstage.MntNsFilter]

	started     chan struct{} // closed when every stage started
	startedOnce sync.Once
	done        chan struct{} // closed when the run has ended; then:
	result      *gadget.Result
	err         error
}

func (r *sharedRun) subscribers() []*subscriber {
	if p := r.subs.Load(); p != nil {
		return *p
	}
	return nil
}

// isStarted reports whether every stage of the run started.
func (r *sharedRun) isStarted() bool {
	select {
	case <-r.started:
		return true
	default:
		return false
	}
}

// lost sums the run's lost samples; valid after done.
func (r *sharedRun) lost() int64 {
	if r.result == nil {
		return 0
	}
	var n uint64
	for _, st := range r.result.Stats {
		n += st.Lost
	}
	return int64(n)
}

// stopReason says why a subscriber's run ends; it decides the status
// written.
type stopReason int

const (
	reasonStop     stopReason = iota + 1 // the stop operation
	reasonDone                           // the duration passed, the snapshot is complete
	reasonPackage                        // the package stopped serving Traces
	reasonDeleted                        // the Trace is being deleted
	reasonShutdown                       // the operator stops
	reasonRunEnded                       // the gadget run ended by itself
	reasonSink                           // the output failed
	reasonConfined                       // the namespace lost the privileged-traces label
)

// subscriber is one Trace's run on a shared gadget run: its filter, its
// sink, its counters. Its owner goroutine (own) ends it and writes the
// outcome to status.
type subscriber struct {
	c        *Controller
	key      types.NamespacedName
	uid      types.UID
	op       string // an operation, or opSchedule
	pkg      types.NamespacedName
	filter   *gadgetv1alpha1.ContainerFilter // nil: every event, host processes included
	confined bool                            // filter holds the Trace to its namespace (see confine)
	// liveMntNs: the run's kernel mount-namespace filter came from filter
	// (runParams), so the node may change it while the run goes
	liveMntNs bool
	mode      gadgetv1alpha1.OutputMode
	sink      output.Sink
	status    *output.Status // Status mode only
	start     time.Time      // of the run, as recorded in status.runs
	duration  time.Duration  // 0: until stopped
	limit     int            // spec.historyLimit
	trigger   *cron.Trigger  // of a scheduled run
	snapshot  bool           // the run ends after one snapshot
	// begun is closed once the run's start is in status; the outcome is
	// written after it.
	begun chan struct{}
	run   *sharedRun
	log   logr.Logger

	mu     sync.Mutex // serialises sink writes
	events atomic.Int64

	failOnce sync.Once
	failed   chan struct{}
	failErr  error // set before failed is closed

	stopOnce sync.Once
	stopCh   chan struct{}
	reason   stopReason // set before stopCh is closed
	message  string

	finished chan struct{} // closed when the outcome is in status
}

// newSubscriber returns tr's subscriber for op; filter is what confine
// returned.
func newSubscriber(c *Controller, tr *gadgetv1alpha1.Trace, op string, filter *gadgetv1alpha1.ContainerFilter, confined bool) *subscriber {
	s := &subscriber{
		c: c, key: types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name}, uid: tr.UID, op: op, filter: filter, confined: confined,
		mode: tr.Spec.OutputMode, limit: historyLimit(tr),
		failed: make(chan struct{}), stopCh: make(chan struct{}), finished: make(chan struct{}), begun: make(chan struct{}),
	}
	if s.mode == "" {
		s.mode = gadgetv1alpha1.OutputStatus
	}
	s.log = c.log.WithValues("trace", s.key.String(), "op", op)
	return s
}

func historyLimit(tr *gadgetv1alpha1.Trace) int {
	if tr.Spec.HistoryLimit > 0 {
		return int(tr.Spec.HistoryLimit)
	}
	return DefaultHistoryLimit
}

// write hands one event to the sink. Called by the run's data sources,
// one goroutine per data source: the lock serialises them for the sink.
func (s *subscriber) write(b []byte) {
	select {
	case <-s.failed:
		return
	default:
	}
	s.mu.Lock()
	err := s.sink.Write(b)
	s.mu.Unlock()
	if err != nil {
		s.failOnce.Do(func() {
			s.failErr = err
			close(s.failed)
		})
		return
	}
	s.events.Add(1)
}

// requestStop asks the owner goroutine to end the run; the first reason
// wins.
func (s *subscriber) requestStop(reason stopReason, msg string) {
	s.stopOnce.Do(func() {
		s.reason, s.message = reason, msg
		close(s.stopCh)
	})
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// attach subscribes s to the run of (l, params): the running one when it
// is shared and exists, else a new one. It returns once the gadget is
// attached, or with the error that ended the run before. The owner
// goroutine of s is running when attach returns nil.
func (c *Controller) attach(ctx context.Context, s *subscriber, l *loaded, params map[string]string, shared bool) error {
	key := runKey{digest: l.digest, params: paramsKey(params)}
	c.mu.Lock()
	if c.stopping || c.runCtx == nil {
		c.mu.Unlock()
		return errStopping
	}
	if _, busy := c.active[s.key]; busy {
		c.mu.Unlock()
		return errBusy
	}
	run := c.runs[key]
	if !shared || run == nil {
		rctx, cancel := context.WithCancel(context.WithoutCancel(c.runCtx))
		run = &sharedRun{c: c, id: newRunID(), key: key, shared: shared, pkg: s.pkg, cancel: cancel,
			started: make(chan struct{}), done: make(chan struct{})}
		if shared {
			c.runs[key] = run
		}
		c.byID[run.id] = run
		c.wg.Add(1)
		go c.runGadget(rctx, run, l, params)
	}
	subs := append(append([]*subscriber(nil), run.subscribers()...), s)
	run.subs.Store(&subs)
	s.run = run
	c.active[s.key] = s
	c.wg.Add(1)
	go s.own()
	c.mu.Unlock()

	select {
	case <-run.started:
		return nil
	case <-run.done:
		if run.isStarted() {
			return nil
		}
		<-s.finished
		if run.err == nil {
			return errors.New("the gadget run ended before it started")
		}
		return run.err
	case <-ctx.Done():
		s.requestStop(reasonShutdown, "")
		<-s.finished
		return ctx.Err()
	}
}

// detach removes s from its run; the last subscriber leaving cancels the
// run, which unloads the program.
func (c *Controller) detach(s *subscriber) (last bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	run := s.run
	old := run.subscribers()
	subs := make([]*subscriber, 0, len(old))
	for _, o := range old {
		if o != s {
			subs = append(subs, o)
		}
	}
	run.subs.Store(&subs)
	if len(subs) > 0 {
		return false
	}
	if c.runs[run.key] == run {
		delete(c.runs, run.key)
	}
	run.cancel()
	return true
}

// runGadget runs the gadget until it ends or is cancelled.
func (c *Controller) runGadget(ctx context.Context, run *sharedRun, l *loaded, params map[string]string) {
	defer c.wg.Done()
	logger := slog.New(logr.ToSlogHandler(c.log.WithValues("run", run.id, "gadget", l.gadget.Name)))
	res, err := c.rt.Run(ctx, l.gadget, gadget.RunOptions{ID: run.id, Params: gadget.Params(params), Logger: logger})
	c.mu.Lock()
	if c.runs[run.key] == run {
		delete(c.runs, run.key)
	}
	delete(c.byID, run.id)
	c.mu.Unlock()
	run.result, run.err = res, err
	close(run.done)
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		c.log.Info("gadget run cancelled", "run", run.id, "gadget", l.gadget.Name, "error", err.Error())
	default:
		// Its Traces carry the error in their status and an Event; the
		// log says it too, once per run.
		c.log.Error(err, "gadget run failed", "run", run.id, "gadget", l.gadget.Name)
	}
}

func (c *Controller) runByID(id string) *sharedRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id]
}

// own waits for the end of s's run, then leaves the shared run, closes the
// sink and writes the outcome to status.
func (s *subscriber) own() {
	defer s.c.wg.Done()
	// The duration counts from the run's start: a program slower to load
	// than the duration still traces for all of it, and a run never ends
	// before it started (its start would then write a run entry that no
	// end closes).
	var timer <-chan time.Time
	var started <-chan struct{}
	if s.duration > 0 {
		started = s.run.started
	}
	var durTimer *time.Timer
	defer func() {
		if durTimer != nil {
			durTimer.Stop()
		}
	}()
	var tick <-chan time.Time
	if s.status != nil {
		t := time.NewTicker(s.c.opts.ProgressInterval)
		defer t.Stop()
		tick = t.C
	}
	reason, msg := stopReason(0), ""
	var published int64 = -1
	// A tick with new events reserves a progress token and publishes when
	// it is due. Reservations are served in the order they were made and
	// each Trace holds at most one, so the node's Traces take turns: with
	// N of them busy, each publishes about every N/ProgressRate seconds.
	var pending *rate.Reservation
	var due <-chan time.Time
	var dueTimer *time.Timer
	for reason == 0 {
		select {
		case <-s.stopCh:
			reason, msg = s.reason, s.message
		case <-s.run.done:
			switch {
			case s.run.err != nil:
				reason, msg = reasonRunEnded, fmt.Sprintf("the gadget run failed: %v", s.run.err)
			case s.snapshot:
				reason = reasonDone
			default:
				reason, msg = reasonRunEnded, "the gadget run ended"
			}
		case <-s.failed:
			reason, msg = reasonSink, fmt.Sprintf("write output (%s): %v", s.mode, s.failErr)
		case <-started:
			started = nil
			durTimer = time.NewTimer(s.duration)
			timer = durTimer.C
		case <-timer:
			reason = reasonDone
		case <-tick:
			if pending == nil && s.events.Load() != published {
				pending = s.c.progress.Reserve()
				dueTimer = time.NewTimer(pending.Delay())
				due = dueTimer.C
			}
		case <-due:
			pending, due = nil, nil
			if n := s.events.Load(); s.c.publishProgress(s) {
				published = n
			}
		}
	}
	if pending != nil { // the end publishes; the token goes back to the others
		dueTimer.Stop()
		pending.Cancel()
	}
	s.end(reason, msg)
}

// end finishes the subscriber; see own.
func (s *subscriber) end(reason stopReason, msg string) {
	c := s.c
	started := s.run.isStarted()
	if last := c.detach(s); last {
		<-s.run.done // the program is unloaded; its lost counters are read
	}
	lost := int64(0)
	select {
	case <-s.run.done:
		if len(s.run.subscribers()) == 0 {
			lost = s.run.lost()
		}
	default:
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.runCtx), 30*time.Second)
	defer cancel()
	ref, err := s.sink.Close(ctx)
	if err != nil && reason != reasonDeleted {
		if msg == "" {
			msg = fmt.Sprintf("write output (%s): %v", s.mode, err)
		}
		if reason == reasonStop || reason == reasonDone {
			reason = reasonSink
		}
	}
	st := s.sink.Stats()
	lost += st.Dropped
	if started && reason != reasonDeleted {
		<-s.begun
		if err := c.writeOutcome(s, outcome{reason: reason, message: msg, ref: ref, lost: lost}); err != nil {
			s.log.Error(err, "write the outcome of the run to status")
		}
	}
	if s.mode == gadgetv1alpha1.OutputExternalResource && reason != reasonDeleted {
		// its own deadline: the outcome may have waited out an outage
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.runCtx), 30*time.Second)
		defer cancel()
		if err := c.pruneConfigMaps(ctx, s); err != nil {
			s.log.Error(err, "prune old output ConfigMaps")
		}
	}
	if s.trigger != nil {
		c.cron.Done(*s.trigger)
	}
	c.mu.Lock()
	if c.active[s.key] == s {
		delete(c.active, s.key)
	}
	c.mu.Unlock()
	c.subscriptionsChanged(s.pkg)
	close(s.finished)
}
