package ebpfstage

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// blocker is a stage whose handler stops at the first record until
// released, so the ring buffer behind it fills up.
type blocker struct {
	once    sync.Once
	blocked chan struct{}
	release chan struct{}
	started chan struct{}
}

func (b *blocker) Name() string  { return "blocker" }
func (b *blocker) Priority() int { return 100 }
func (b *blocker) Instantiate(gctx *gadget.Context, _ gadget.Params) (gadget.StageInstance, error) {
	for _, ds := range gctx.DataSources() {
		ds.Subscribe("blocker", 100, func(*datasource.DataSource, *datasource.Record) error {
			b.once.Do(func() {
				close(b.blocked)
				<-b.release
			})
			return nil
		})
	}
	return b, nil
}
func (b *blocker) Start(*gadget.Context) error { close(b.started); return nil }

func TestLostSamplesAreCounted(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	b := &blocker{blocked: make(chan struct{}), release: make(chan struct{}), started: make(chan struct{})}
	rt, _ := gadget.New(New(Options{}), b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type out struct {
		res *gadget.Result
		err error
	}
	done := make(chan out, 1)
	g := gadget.Gadget{Name: "lossy", Object: testObject(t, "lossy.bpf.o")}
	go func() {
		res, err := rt.Run(ctx, g, gadget.RunOptions{Params: gadget.Params{"target_pid": fmt.Sprint(os.Getpid())}})
		done <- out{res, err}
	}()
	<-b.started
	syscall.Getpid()
	select {
	case <-b.blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("the first event never arrived")
	}
	const calls = 1000
	for range calls {
		syscall.Getpid()
	}
	close(b.release)
	cancel()
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	st := o.res.Stats["getpid"]
	// a 4 KiB ring holds 16 events of 248 bytes; the rest is lost
	if st.Lost < calls-16 || st.Emitted+st.Lost < calls+1 {
		t.Errorf("stats %+v after %d getpid calls with a blocked reader: want >= %d lost, every call accounted for", st, calls+1, calls-16)
	}
}
