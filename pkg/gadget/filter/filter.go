package filter

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Name of the stage.
const Name = "filter"

// Priority runs the filter after enrichers (which add fields) and before
// limiters and sinks.
const Priority = 20

// ParamFilter is the param holding the expressions, separated by commas
// (write a literal comma as `\,`).
const ParamFilter = "filter"

// Stage is the filter. The zero value is ready to use.
type Stage struct{}

var (
	_ gadget.Stage         = Stage{}
	_ gadget.ParamDeclarer = Stage{}
)

// Name implements gadget.Stage.
func (Stage) Name() string { return Name }

// Priority implements gadget.Stage.
func (Stage) Priority() int { return Priority }

// Params implements gadget.ParamDeclarer.
func (Stage) Params() []gadget.ParamDesc {
	return []gadget.ParamDesc{{Key: ParamFilter, Type: "string",
		Description: "keep records matching every expression: field==v, field!=v, field~regexp, field!~regexp, field<v, <=, >, >= (comma-separated)"}}
}

// Instantiate parses the expressions and subscribes to every
// data source that has their fields. It opts out without a filter; a
// field no data source has is an error.
func (Stage) Instantiate(gctx *gadget.Context, params gadget.Params) (gadget.StageInstance, error) {
	text := strings.TrimSpace(params[ParamFilter])
	if text == "" {
		return nil, nil
	}
	exprs, err := Parse(text)
	if err != nil {
		return nil, err
	}
	sources := gctx.DataSources()
	perSource := map[*datasource.DataSource][]*compiled{}
	for _, e := range exprs {
		found := false
		for _, ds := range sources {
			f := ds.Field(e.Field)
			if f == nil {
				continue
			}
			found = true
			c, err := compile(e, f)
			if err != nil {
				return nil, fmt.Errorf("filter %q: %w", e.Text, err)
			}
			perSource[ds] = append(perSource[ds], c)
		}
		if !found {
			return nil, fmt.Errorf("filter %q: no data source has a field %q (fields: %s)", e.Text, e.Field, fieldNames(sources))
		}
	}
	for ds, cs := range perSource {
		ds.Subscribe(Name, Priority, func(_ *datasource.DataSource, r *datasource.Record) error {
			for _, c := range cs {
				if !c.match(r) {
					return datasource.ErrDrop
				}
			}
			return nil
		})
	}
	return instance{}, nil
}

type instance struct{}

func (instance) Name() string { return Name }

func fieldNames(sources []*datasource.DataSource) string {
	var names []string
	for _, ds := range sources {
		for _, f := range ds.Fields() {
			if !f.Hidden {
				names = append(names, f.Name)
			}
		}
	}
	return strings.Join(names, ", ")
}

// Expr is one parsed expression.
type Expr struct {
	// Text as written.
	Text  string
	Field string
	// Op is one of == != ~ !~ < <= > >=.
	Op    string
	Value string
}

// ops in the order they are tried: longer first.
var ops = []string{"==", "!=", "!~", "<=", ">=", "~", "<", ">"}

// Parse splits text at unescaped commas and parses each expression.
func Parse(text string) ([]Expr, error) {
	var out []Expr
	for _, part := range splitUnescaped(text) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		e, err := parseOne(part)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("filter %q: no expression", text)
	}
	return out, nil
}

func splitUnescaped(s string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case s[i] == ',':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(parts, cur.String())
}

func parseOne(s string) (Expr, error) {
	end := 0
	for end < len(s) && (s[end] == '_' || s[end] == '.' || s[end] >= 'a' && s[end] <= 'z' || s[end] >= 'A' && s[end] <= 'Z' || s[end] >= '0' && s[end] <= '9') {
		end++
	}
	field := s[:end]
	rest := strings.TrimLeft(s[end:], " ")
	if field == "" {
		return Expr{}, fmt.Errorf("filter %q: expected a field name first, e.g. comm==bash", s)
	}
	for _, op := range ops {
		if strings.HasPrefix(rest, op) {
			return Expr{Text: s, Field: field, Op: op, Value: strings.TrimSpace(rest[len(op):])}, nil
		}
	}
	return Expr{}, fmt.Errorf("filter %q: expected an operator (==, !=, ~, !~, <, <=, >, >=) after %q", s, field)
}

// compiled is an expression bound to a field, its value parsed once.
type compiled struct {
	f      *datasource.Field
	op     string
	str    []byte
	re     *regexp.Regexp
	i      int64
	u      uint64
	signed bool
}

func compile(e Expr, f *datasource.Field) (*compiled, error) {
	c := &compiled{f: f, op: e.Op}
	if e.Op == "~" || e.Op == "!~" {
		if f.Kind != datasource.KindString && f.Kind != datasource.KindStringList {
			return nil, fmt.Errorf("field %s is %s; regular expressions apply to strings", f.Name, f.Kind)
		}
		re, err := regexp.Compile(e.Value)
		if err != nil {
			return nil, fmt.Errorf("bad regular expression: %w", err)
		}
		c.re = re
		return c, nil
	}
	switch f.Kind {
	case datasource.KindString, datasource.KindStringList:
		if e.Op != "==" && e.Op != "!=" {
			return nil, fmt.Errorf("field %s is a string: use ==, !=, ~ or !~", f.Name)
		}
		c.str = []byte(e.Value)
		return c, nil
	case datasource.KindBytes:
		return nil, fmt.Errorf("field %s holds raw bytes and cannot be filtered", f.Name)
	}
	c.signed = f.Signed
	v := e.Value
	switch f.Kind {
	case datasource.KindBool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("field %s is a bool: expected true or false, got %q", f.Name, v)
		}
		if b {
			c.u = 1
		}
		return c, nil
	case datasource.KindIPv4:
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("field %s is an IPv4 address: expected e.g. 10.0.0.1, got %q", f.Name, v)
		}
		b := a.As4()
		// compare in the record's byte order
		rec := datasource.New("tmp", datasource.TypeTracer)
		tf, _ := rec.AddField("a", datasource.KindIPv4, 4)
		r := rec.NewRecord()
		copy(tf.Bytes(r), b[:])
		c.u = tf.Uint(r)
		return c, nil
	case datasource.KindErrno:
		if n, ok := errnoByName(v); ok {
			// a signed errno field holds -errno, an unsigned one errno
			c.i, c.u = int64(n), uint64(n)
			if f.Signed {
				c.i = -int64(n)
			}
			return c, nil
		}
	case datasource.KindEnum:
		for n, name := range f.Enum {
			if name == v {
				c.i, c.u = n, uint64(n)
				return c, nil
			}
		}
	}
	if c.signed {
		n, err := strconv.ParseInt(v, 0, 64)
		if err != nil {
			return nil, fmt.Errorf("field %s is %s: expected an integer, got %q", f.Name, f.Kind, v)
		}
		c.i = n
	} else {
		n, err := strconv.ParseUint(v, 0, 64)
		if err != nil {
			return nil, fmt.Errorf("field %s is %s: expected an unsigned integer, got %q", f.Name, f.Kind, v)
		}
		c.u = n
	}
	return c, nil
}

func errnoByName(s string) (syscall.Errno, bool) {
	for n := syscall.Errno(1); n < 134; n++ {
		if name := datasource.ErrnoName(n); name != "" && name == s {
			return n, true
		}
	}
	return 0, false
}

func (c *compiled) match(r *datasource.Record) bool {
	if c.re != nil {
		m := c.re.Match(c.f.Str(r))
		return m == (c.op == "~")
	}
	if c.str != nil || c.f.Kind == datasource.KindString || c.f.Kind == datasource.KindStringList {
		eq := bytes.Equal(c.f.Str(r), c.str)
		return eq == (c.op == "==")
	}
	var cmp int
	if c.signed {
		v := c.f.Int(r)
		cmp = compareInt(v, c.i)
	} else {
		v := c.f.Uint(r)
		cmp = compareUint(v, c.u)
	}
	switch c.op {
	case "==":
		return cmp == 0
	case "!=":
		return cmp != 0
	case "<":
		return cmp < 0
	case "<=":
		return cmp <= 0
	case ">":
		return cmp > 0
	case ">=":
		return cmp >= 0
	}
	return false
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
