package filter

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/gadgettest"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/sink"
)

type row struct {
	comm, fname string
	pid         uint32
	ret         int64
	daddr       [4]byte
}

var rows = []row{
	{"bash", "/etc/passwd", 1, 3, [4]byte{127, 0, 0, 1}},
	{"bash", "/tmp/x", 100, -2, [4]byte{10, 0, 0, 1}},
	{"sshd", "/etc/ssh/sshd_config", 200, -13, [4]byte{10, 0, 0, 2}},
	{"cat", "/home/a,b", 300, 4, [4]byte{127, 0, 0, 1}},
}

func source() *gadgettest.Source {
	return &gadgettest.Source{
		New: gadgettest.Layout("open", datasource.TypeTracer,
			datasource.Field{Name: "comm", Kind: datasource.KindString, Offset: 0, Size: 16},
			datasource.Field{Name: "fname", Kind: datasource.KindString, Offset: 16, Size: 64},
			datasource.Field{Name: "pid", Kind: datasource.KindUint32, Offset: 80, Size: 4},
			datasource.Field{Name: "daddr", Kind: datasource.KindIPv4, Offset: 84, Size: 4},
			datasource.Field{Name: "ret", Kind: datasource.KindErrno, Offset: 88, Size: 8},
		),
		N: len(rows),
		Fill: func(i int, ds *datasource.DataSource, r *datasource.Record) {
			b := r.Raw()
			copy(b[0:16], rows[i].comm)
			copy(b[16:80], rows[i].fname)
			binary.NativeEndian.PutUint32(b[80:], rows[i].pid)
			copy(b[84:88], rows[i].daddr[:])
			binary.NativeEndian.PutUint64(b[88:], uint64(rows[i].ret))
		},
	}
}

func run(t *testing.T, expr string) (string, error) {
	t.Helper()
	var out strings.Builder
	rt, err := gadget.New(source(), Stage{}, &sink.Writer{W: &out, Format: sink.FormatColumns})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Run(context.Background(), gadget.Gadget{Name: "t"}, gadget.RunOptions{Params: gadget.Params{ParamFilter: expr}})
	// only the PID column, to compare simply
	var pids []string
	for i, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if i == 0 || line == "" {
			continue
		}
		f := strings.Fields(line)
		pids = append(pids, f[2])
	}
	return strings.Join(pids, " "), err
}

func TestFilter(t *testing.T) {
	tests := []struct{ expr, pids string }{
		{"", "1 100 200 300"},
		{"comm==bash", "1 100"},
		{"comm!=bash", "200 300"},
		{"pid!=1", "100 200 300"},
		{"fname~^/etc", "1 200"},
		{"fname!~^/etc", "100 300"},
		{"comm==bash,fname~^/etc", "1"},
		{"pid>=100, pid<300", "100 200"},
		{"pid>100", "200 300"},
		{"pid<=100", "1 100"},
		{"ret<0", "100 200"},
		{"ret==ENOENT", "100"},
		{"ret==-13", "200"},
		{"daddr==127.0.0.1", "1 300"},
		{`fname==/home/a\,b`, "300"},
		{"comm == sshd", "200"},
		{"comm==nobody", ""},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := run(t, tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.pids {
				t.Errorf("pids %q, want %q", got, tt.pids)
			}
		})
	}
}

func TestFilterErrors(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"cmd==bash", `filter "cmd==bash": no data source has a field "cmd" (fields: comm, fname, pid, daddr, ret)`},
		{"comm", `filter "comm": expected an operator`},
		{"==bash", `expected a field name first`},
		{"pid==abc", `field pid is uint32: expected an unsigned integer, got "abc"`},
		{"pid~1", "field pid is uint32; regular expressions apply to strings"},
		{"comm<b", "field comm is a string: use ==, !=, ~ or !~"},
		{"fname~[", "bad regular expression"},
		{"daddr==::1", "field daddr is an IPv4 address"},
		{"ret==EWHAT", `field ret is errno: expected an integer, got "EWHAT"`},
		{" , ", "no expression"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := run(t, tt.expr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	exprs, err := Parse(`a==1, b!~x\,y ,c>=-3`)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(exprs)
	if want := `[{a==1 a == 1} {b!~x,y b !~ x,y} {c>=-3 c >= -3}]`; got != want {
		t.Errorf("Parse = %s, want %s", got, want)
	}
}

// TestFilterUnsignedErrno: an errno name matches a field holding the
// errno number itself (Inspektor Gadget's gadget_errno) as it matches
// one holding -errno.
func TestFilterUnsignedErrno(t *testing.T) {
	ds := datasource.New("t", datasource.TypeTracer)
	f, err := ds.AddFieldAt(datasource.Field{Name: "error_raw", Kind: datasource.KindErrno, Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	f.Signed = false
	exprs, err := Parse("error_raw==ENOENT")
	if err != nil {
		t.Fatal(err)
	}
	c, err := compile(exprs[0], f)
	if err != nil {
		t.Fatal(err)
	}
	r := ds.NewRecord()
	for _, tt := range []struct {
		v    uint64
		want bool
	}{{2, true}, {13, false}, {0, false}} {
		f.SetUint(r, tt.v)
		if got := c.match(r); got != tt.want {
			t.Errorf("error_raw=%d matches error_raw==ENOENT: %v, want %v", tt.v, got, tt.want)
		}
	}
}
