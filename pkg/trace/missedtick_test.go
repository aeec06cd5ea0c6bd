package trace_test

import (
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
)

// apiProxy is a TCP proxy in front of the test's kube-apiserver. Paused,
// it cuts every connection and closes new ones at once: from the node's
// side the API server is unreachable.
type apiProxy struct {
	ln      net.Listener
	backend string
	wg      sync.WaitGroup

	mu     sync.Mutex
	paused bool                  // guarded by mu
	conns  map[net.Conn]struct{} // both ends of every live pair; guarded by mu
}

// startAPIProxy starts a proxy to env's API server; the test's cleanup
// stops it and waits for its goroutines.
func startAPIProxy(t *testing.T) *apiProxy {
	t.Helper()
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &apiProxy{ln: ln, backend: u.Host, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

// config is env's rest.Config reaching the API server through the proxy
// (the server's certificate names 127.0.0.1, as does the proxy).
func (p *apiProxy) config() *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Host = "https://" + p.ln.Addr().String()
	return cfg
}

func (p *apiProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed by the cleanup
		}
		p.mu.Lock()
		paused := p.paused
		p.mu.Unlock()
		if paused {
			_ = c.Close()
			continue
		}
		b, err := net.Dial("tcp", p.backend)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[b] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, b)
		go p.pipe(b, c)
	}
}

// pipe copies from src to dst; the end of either closes both.
func (p *apiProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut closes every live connection.
func (p *apiProxy) cut() {
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (p *apiProxy) pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	p.cut()
}

func (p *apiProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}

// TestTickMissedDuringOutageIsCounted: a scheduled Trace's tick that comes
// while the node cannot reach the API server is not lost silently: once
// the server is back it is counted in status.skippedRuns, the run history
// says why, and the schedule goes on.
func TestTickMissedDuringOutageIsCounted(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	proxy := startAPIProxy(t)
	var logs testlog.Lines
	n := startNode(t, uniqueNode(t), nodeOptions{config: proxy.config(), logger: logs.Logger(0)})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	tr := newTrace(t, ns, "outage", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Schedule = "@every 2s"
		tr.Spec.Duration = &metav1.Duration{Duration: 500 * time.Millisecond}
	})
	waitTrace(t, key(tr), 60*time.Second, "a finished run before the outage", func(tr *gadgetv1alpha1.Trace) bool {
		return len(tr.Status.Runs) > 0 && tr.Status.Runs[0].EndTime != nil
	})

	proxy.pause()
	// The outage lasts until a tick of the Trace has found the server
	// unreachable (the node says so in its log; the end of a run that
	// waits for the server says so too, with another action).
	eventually.True(t, 30*time.Second, "a tick during the outage", func() bool {
		return logs.Count("API server unreachable", ns+"/outage", `"action"="read the Trace for a scheduled run"`) > 0
	})
	resumed := time.Now()
	proxy.resume()

	const why = "skipped: the API server was unreachable at the scheduled time"
	got := waitTrace(t, key(tr), 60*time.Second, "the missed tick counted and a run after the outage", func(tr *gadgetv1alpha1.Trace) bool {
		missed, after := false, false
		for _, r := range tr.Status.Runs {
			missed = missed || strings.HasPrefix(r.Error, why)
			after = after || (r.Error == "" && r.EndTime != nil && r.StartTime.After(resumed))
		}
		return tr.Status.SkippedRuns >= 1 && missed && after
	})
	for _, r := range got.Status.Runs {
		if strings.HasPrefix(r.Error, why) && (r.EndTime == nil || r.StartTime.After(resumed)) {
			t.Errorf("missed run %+v: want it at its scheduled time, before the outage ended (%s), and ended", r, resumed)
		}
	}
	env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: ns, Kind: "Trace", Name: "outage", Type: "Warning", Reason: "RunSkipped", Parts: []string{why}})
	if c := logs.Count("scheduled run skipped", ns+"/outage"); c == 0 {
		t.Errorf("no log line for the skipped run:\n%s", strings.Join(logs.Get(), "\n"))
	}
}
