package nelm

import (
	"context"
	"math/rand/v2"
	"reflect"
	"strings"
	"time"

	helmrelease "helm.sh/helm/v3/pkg/release"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// Drift reports what a check of a deployed release's objects found:
// objects that no longer exist (Missing), or, for a package whose
// spec.driftDetection is warn or enabled, the outcome of comparing its
// objects' fields with the manifest (Checked).
type Drift struct {
	// Package whose release was checked.
	Package Package
	// Revision of the release checked.
	Revision int
	// Missing objects; a run restores them.
	Missing []Object
	// Checked: the objects' fields were compared with the manifest;
	// Modified lists those that differed, none when nothing did.
	Checked  bool
	Modified []ObjectDrift
	// Mode is the drift detection mode the comparison applied.
	Mode v1alpha1.DriftDetectionMode
	// Corrected: Modified were set back to the manifest's values (mode
	// enabled, and the correction succeeded).
	Corrected bool
}

// ModifiedSummary names a few of the modified objects and a few paths
// of each, for a message.
func (d Drift) ModifiedSummary() string { return describeDrift(d.Modified) }

// monitor is one package's drift check loop.
type monitor struct {
	// serviceAccount the monitor reads as (Package.ServiceAccount).
	serviceAccount string
	// drift is the package's drift detection the monitor applies.
	drift  *v1alpha1.DriftDetection
	cancel context.CancelFunc
	done   chan struct{}
}

// Drifts delivers a Drift each time a monitor finds objects missing, and
// each time the fields of a release's objects are compared with its
// manifest (by a monitor's check or by an Upgrade that made no revision),
// whatever the comparison found, so that its owner can both record and
// clear drift. The channel is buffered (Options.DriftBuffer); when it is
// full a report is dropped, and the next check reports again. It is never
// closed.
func (s *Service) Drifts() <-chan Drift { return s.drifts }

// Pause stops drift reports for pkg until a matching Resume; calls nest.
// Hooks and upgrades pause the monitor so their own changes raise no alarm.
// Pausing a package without a monitor is allowed and holds for a monitor
// started later.
func (s *Service) Pause(pkg Package) {
	s.mu.Lock()
	s.paused[pkg.Key()]++
	s.pauseEpoch[pkg.Key()]++
	s.mu.Unlock()
}

// Resume undoes one Pause. Extra Resumes are ignored.
func (s *Service) Resume(pkg Package) {
	s.mu.Lock()
	if n := s.paused[pkg.Key()]; n > 1 {
		s.paused[pkg.Key()] = n - 1
	} else {
		delete(s.paused, pkg.Key())
	}
	s.mu.Unlock()
}

// pauseState returns how many times pkg was ever paused, and how many
// Pauses are not yet matched by a Resume.
func (s *Service) pauseState(pkg Package) (uint64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pauseEpoch[pkg.Key()], s.paused[pkg.Key()]
}

// Monitoring reports whether pkg's drift monitor runs.
func (s *Service) Monitoring(pkg Package) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.monitors[pkg.Key()]
	return ok
}

// StopMonitors stops every drift monitor and waits for them. No monitor
// starts afterwards. Safe to call more than once.
func (s *Service) StopMonitors() {
	s.mu.Lock()
	s.stopped = true
	ms := s.monitors
	s.monitors = map[string]*monitor{}
	s.mu.Unlock()
	for _, m := range ms {
		m.cancel()
	}
	s.wg.Wait()
}

// startMonitor starts pkg's monitor unless it runs or StopMonitors was
// called. The Service owns the goroutine; stopMonitor, Delete and
// StopMonitors end it.
func (s *Service) startMonitor(pkg Package, seen lastDeployed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.monitors[pkg.Key()]; ok && (m.serviceAccount != pkg.ServiceAccount || !reflect.DeepEqual(m.drift, pkg.DriftDetection)) {
		// The package acts as another identity now, or detects drift of
		// modified objects differently; so must its monitor.
		delete(s.monitors, pkg.Key())
		s.mu.Unlock()
		m.cancel()
		<-m.done
		s.mu.Lock()
	}
	if s.stopped {
		return
	}
	if _, ok := s.monitors[pkg.Key()]; ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &monitor{serviceAccount: pkg.ServiceAccount, drift: pkg.DriftDetection, cancel: cancel, done: make(chan struct{})}
	s.monitors[pkg.Key()] = m
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(m.done)
		s.runMonitor(ctx, pkg, seen)
	}()
}

// stopMonitor stops pkg's monitor and waits for it.
func (s *Service) stopMonitor(pkg Package) {
	s.mu.Lock()
	m, ok := s.monitors[pkg.Key()]
	delete(s.monitors, pkg.Key())
	s.mu.Unlock()
	if ok {
		m.cancel()
		<-m.done
	}
	s.mu.Lock()
	if s.paused[pkg.Key()] == 0 {
		delete(s.pauseEpoch, pkg.Key())
	}
	s.mu.Unlock()
}

func (s *Service) nextCheck() time.Duration {
	d := s.opts.MonitorInterval
	if j := s.opts.MonitorJitter; j > 0 {
		d += time.Duration(rand.Float64() * j * float64(d))
	}
	return d
}

// lastDeployed is what a monitor saw deployed at its previous check.
type lastDeployed struct {
	revision int
	manifest string
}

func (s *Service) runMonitor(ctx context.Context, pkg Package, seen lastDeployed) {
	t := time.NewTimer(s.nextCheck())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d, ok := s.check(ctx, pkg, &seen); ok {
			s.report(pkg, d)
		}
		t.Reset(s.nextCheck())
	}
}

// check looks for missing objects of pkg's deployed release. A release
// that vanished (uninstalled behind gadgetpm's back) is checked against the
// revision seen deployed before. It reports nothing while paused, when
// paused at any time during the check, when the last revision is not
// deployed (an operation is under way or failed; the package manager
// handles that), or on errors, which are logged and retried at the next
// check.
func (s *Service) check(ctx context.Context, pkg Package, seen *lastDeployed) (Drift, bool) {
	log := s.opts.Logger.WithValues("package", pkg.Key())
	epoch, paused := s.pauseState(pkg)
	if paused > 0 {
		log.V(1).Info("drift check skipped: paused", "pauses", paused)
		return Drift{}, false
	}
	op, err := s.newOperation(pkg)
	if err != nil {
		log.Error(err, "drift check")
		return Drift{}, false
	}
	last, err := op.lastRelease()
	if err != nil {
		log.Error(err, "drift check: read release")
		return Drift{}, false
	}
	switch {
	case last == nil && seen.manifest == "":
		return Drift{}, false
	case last == nil:
		// Keep seen: the objects of the vanished release are still expected.
	case last.Info.Status != helmrelease.StatusDeployed:
		return Drift{}, false
	default:
		seen.revision, seen.manifest = last.Version, last.Manifest
	}
	missing, err := op.missingObjects(ctx, seen.manifest)
	if err != nil {
		if ctx.Err() == nil {
			log.Error(err, "drift check: read objects")
		}
		return Drift{}, false
	}
	// An operation that started (and maybe finished) while objects were
	// read may have removed them on purpose.
	if now, paused := s.pauseState(pkg); paused > 0 || now != epoch || ctx.Err() != nil {
		return Drift{}, false
	}
	if len(missing) > 0 {
		return Drift{Package: pkg, Revision: seen.revision, Missing: missing}, true
	}
	if last != nil {
		s.monitorModified(ctx, pkg, epoch)
	}
	return Drift{}, false
}

// monitorModified looks for modified objects of pkg's deployed release
// (spec.driftDetection warn or enabled), reports them and, in mode
// enabled, corrects them. It holds pkg's lock, so no upgrade or delete
// runs meanwhile, and does nothing if an operation or hook ran since the
// check began at epoch.
func (s *Service) monitorModified(ctx context.Context, pkg Package, epoch uint64) {
	if driftMode(pkg) == v1alpha1.DriftDetectionDisabled {
		return
	}
	log := s.opts.Logger.WithValues("package", pkg.Key())
	unlock, err := s.locks.lock(ctx, pkg.Key())
	if err != nil {
		return
	}
	defer unlock()
	if now, paused := s.pauseState(pkg); paused > 0 || now != epoch {
		return
	}
	op, err := s.newOperation(pkg)
	if err != nil {
		log.Error(err, "drift check")
		return
	}
	last, err := op.lastRelease()
	if err != nil {
		log.Error(err, "drift check: read release")
		return
	}
	if last == nil || last.Info.Status != helmrelease.StatusDeployed {
		return
	}
	if _, err := s.checkModified(ctx, pkg, op, last.Version, last.Manifest); err != nil && ctx.Err() == nil {
		// An Event too: a refusal of the package's identity lasts until
		// someone grants the right.
		s.failed(pkg, "drift check", forbidden("detect drift of", pkg, err))
	}
}

func (s *Service) report(pkg Package, d Drift) {
	names := make([]string, len(d.Missing))
	for i, o := range d.Missing {
		names[i] = o.String()
	}
	s.event(pkg, true, ReasonDrift, "Release %s revision %d: %s missing; a run will restore it",
		pkg.Name, d.Revision, strings.Join(names, ", "))
	s.send(d)
}

// send delivers d on the Drifts channel, or drops it when the channel is
// full: the next check reports again.
func (s *Service) send(d Drift) {
	select {
	case s.drifts <- d:
	default:
		s.opts.Logger.Info("drift report dropped: channel full; the next check reports it again", "package", d.Package.Key())
	}
}
