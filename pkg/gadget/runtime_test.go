package gadget

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// recorder logs every lifecycle call of its stages, in order.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

// stepStage is a stage whose instance records its steps and fails at
// failAt; with endRun its Start ends the run.
type stepStage struct {
	name     string
	priority int
	deps     []string
	rec      *recorder
	failAt   string
	endRun   bool
	optOut   bool
}

func (o *stepStage) Name() string           { return o.name }
func (o *stepStage) Priority() int          { return o.priority }
func (o *stepStage) Dependencies() []string { return o.deps }
func (o *stepStage) Params() []ParamDesc    { return []ParamDesc{{Key: o.name + "-param"}} }
func (o *stepStage) Instantiate(gctx *Context, _ Params) (StageInstance, error) {
	if o.optOut {
		return nil, nil
	}
	return (&stepInst{o}).step(gctx, "instantiate")
}

type stepInst struct{ op *stepStage }

var errInjected = errors.New("injected")

func (i *stepInst) Name() string { return i.op.name }
func (i *stepInst) step(gctx *Context, s string) (*stepInst, error) {
	i.op.rec.add(s + " " + i.op.name)
	if i.op.failAt == s {
		return nil, fmt.Errorf("%s %s: %w", s, i.op.name, errInjected)
	}
	return i, nil
}
func (i *stepInst) PreStart(g *Context) error { _, err := i.step(g, "prestart"); return err }
func (i *stepInst) Start(g *Context) error {
	_, err := i.step(g, "start")
	if err == nil && i.op.endRun {
		g.Cancel()
	}
	return err
}
func (i *stepInst) Stop(g *Context) error     { _, err := i.step(g, "stop"); return err }
func (i *stepInst) PostStop(g *Context) error { _, err := i.step(g, "poststop"); return err }
func (i *stepInst) Close(g *Context) error    { _, err := i.step(g, "close"); return err }

func TestRunOrderAndTeardownWithFailureAtEveryStep(t *testing.T) {
	full := []string{
		"instantiate a", "instantiate b", "instantiate c",
		"prestart a", "prestart b", "prestart c",
		"start a", "start b", "start c",
		"stop c", "stop b", "stop a",
		"poststop c", "poststop b", "poststop a",
		"close c", "close b", "close a",
	}
	tests := []struct {
		failAt string
		want   []string
	}{
		{"", full},
		{"instantiate", []string{"instantiate a", "instantiate b", "close a"}},
		{"prestart", []string{
			"instantiate a", "instantiate b", "instantiate c",
			"prestart a", "prestart b",
			"poststop a",
			"close c", "close b", "close a",
		}},
		{"start", []string{
			"instantiate a", "instantiate b", "instantiate c",
			"prestart a", "prestart b", "prestart c",
			"start a", "start b",
			"stop a",
			"poststop c", "poststop b", "poststop a",
			"close c", "close b", "close a",
		}},
		// a failing teardown step never skips the others
		{"stop", full},
		{"poststop", full},
		{"close", full},
	}
	for _, tt := range tests {
		t.Run("fail at "+tt.failAt, func(t *testing.T) {
			rec := &recorder{}
			// registered out of order: priorities decide
			rt, err := New(
				&stepStage{name: "c", priority: 30, rec: rec, endRun: true},
				&stepStage{name: "a", priority: 10, rec: rec},
				&stepStage{name: "b", priority: 20, rec: rec, failAt: tt.failAt},
			)
			if err != nil {
				t.Fatal(err)
			}
			_, err = rt.Run(context.Background(), Gadget{Name: "g"}, RunOptions{})
			if tt.failAt == "" {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			} else {
				if !errors.Is(err, errInjected) {
					t.Fatalf("Run error = %v, want the injected failure", err)
				}
				if !strings.Contains(err.Error(), tt.failAt+" stage b") {
					t.Errorf("error %q does not name the step and stage", err)
				}
			}
			if !slices.Equal(rec.log, tt.want) {
				t.Errorf("steps:\n got %q\nwant %q", rec.log, tt.want)
			}
		})
	}
}

func TestInfoRunsOnlyInstantiateAndClose(t *testing.T) {
	rec := &recorder{}
	ds := datasource.New("events", datasource.TypeTracer)
	if _, err := ds.AddField("pid", datasource.KindUint32, 4); err != nil {
		t.Fatal(err)
	}
	src := StageFunc{StageName: "src", StagePriority: 0, Fn: func(gctx *Context, _ Params) (StageInstance, error) {
		rec.add("instantiate src")
		return &stepInst{&stepStage{name: "src", rec: rec}}, gctx.RegisterDataSource(ds)
	}}
	rt, err := New(src, &stepStage{name: "b", priority: 5, rec: rec}, &stepStage{name: "skip", optOut: true, rec: rec})
	if err != nil {
		t.Fatal(err)
	}
	info, err := rt.Info(context.Background(), Gadget{}, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"instantiate src", "instantiate b", "close b", "close src"}
	if !slices.Equal(rec.log, want) {
		t.Errorf("steps %q, want %q", rec.log, want)
	}
	cat := info.Catalog()
	if len(cat.DataSources) != 1 || cat.DataSources[0].Name != "events" || cat.DataSources[0].Fields[0].Type != "uint32" {
		t.Errorf("catalog data sources = %+v", cat.DataSources)
	}
	var keys []string
	for _, p := range cat.Params {
		keys = append(keys, p.Key)
	}
	if !slices.Equal(keys, []string{"skip-param", "b-param"}) {
		t.Errorf("catalog params = %q", keys)
	}
}

func TestRunRejectsUnknownParamsAndClosesEverything(t *testing.T) {
	rec := &recorder{}
	rt, err := New(&stepStage{name: "a", rec: rec, endRun: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Run(context.Background(), Gadget{Name: "g"}, RunOptions{Params: Params{"a-param": "1", "tagret": "x"}})
	if err == nil || !strings.Contains(err.Error(), `unknown param tagret (this gadget accepts: a-param)`) {
		t.Fatalf("error = %v", err)
	}
	if want := []string{"instantiate a", "close a"}; !slices.Equal(rec.log, want) {
		t.Errorf("steps %q, want %q", rec.log, want)
	}
}

func TestRunEndsWhenCallerCancels(t *testing.T) {
	rec := &recorder{}
	rt, _ := New(&stepStage{name: "a", rec: rec})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := rt.Run(ctx, Gadget{}, RunOptions{})
		done <- err
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("cancelled run returned %v", err)
	}
	if rec.log[len(rec.log)-1] != "close a" {
		t.Errorf("run did not tear down: %q", rec.log)
	}
}

func TestRunReturnsFailure(t *testing.T) {
	boom := errors.New("reader broke")
	op := StageFunc{StageName: "f", Fn: func(gctx *Context, _ Params) (StageInstance, error) {
		gctx.Fail(boom)
		return &stepInst{&stepStage{name: "f", rec: &recorder{}}}, nil
	}}
	rt, _ := New(op)
	if _, err := rt.Run(context.Background(), Gadget{}, RunOptions{}); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
}

func TestSortStages(t *testing.T) {
	stage := func(name string, prio int, deps ...string) Stage {
		return &stepStage{name: name, priority: prio, deps: deps}
	}
	tests := []struct {
		name    string
		stages  []Stage
		want    string
		wantErr string
	}{
		{name: "priority then name", stages: []Stage{stage("z", 1), stage("b", 0), stage("a", 0)}, want: "a b z"},
		{name: "dependency beats priority", stages: []Stage{stage("sink", 0, "enrich"), stage("enrich", 10)}, want: "enrich sink"},
		{name: "chain", stages: []Stage{stage("c", 0, "b"), stage("b", 0, "a"), stage("a", 5), stage("x", 1)}, want: "x a b c"},
		{name: "missing", stages: []Stage{stage("a", 0, "ghost")}, wantErr: "a depends on ghost, which is not in the runtime"},
		{name: "cycle", stages: []Stage{stage("a", 0, "b"), stage("b", 0, "c"), stage("c", 0, "a"), stage("d", 0)}, wantErr: "dependency cycle: a -> b -> c -> a"},
		{name: "self", stages: []Stage{stage("a", 0, "a")}, wantErr: "dependency cycle: a -> a"},
		{name: "duplicate", stages: []Stage{stage("a", 0), stage("a", 1)}, wantErr: `two stages named "a"`},
		{name: "nil", stages: []Stage{nil}, wantErr: "nil stage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := New(tt.stages...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, o := range rt.Stages() {
				names = append(names, o.Name())
			}
			if got := strings.Join(names, " "); got != tt.want {
				t.Errorf("order %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseParams(t *testing.T) {
	p, err := ParseParams([]string{"a=1", "b=x=y", " c =", "d="})
	if err != nil {
		t.Fatal(err)
	}
	if p["a"] != "1" || p["b"] != "x=y" || p["c"] != "" || len(p) != 4 {
		t.Errorf("params = %v", p)
	}
	for _, bad := range []string{"novalue", "=1"} {
		if _, err := ParseParams([]string{bad}); err == nil || !strings.Contains(err.Error(), "expected key=value") {
			t.Errorf("ParseParams(%q) = %v", bad, err)
		}
	}
}
