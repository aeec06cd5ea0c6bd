package ebpfstage

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Column annotations of gadget.yaml (Inspektor Gadget's names) that
// `-o columns` honours.
const (
	annotationTemplate  = "template"
	annotationWidth     = "columns.width"
	annotationMinWidth  = "columns.minwidth"
	annotationMaxWidth  = "columns.maxwidth"
	annotationAlignment = "columns.alignment"
	annotationEllipsis  = "columns.ellipsis"
)

// fieldTemplates are the values of the `template` annotation: column
// layouts for fields that hold the same kind of thing in every gadget.
var fieldTemplates = map[string]datasource.Columns{
	"comm":        {Width: 16, MaxWidth: 16, Ellipsis: datasource.EllipsisEnd},
	"pcomm":       {Width: 16, MaxWidth: 16, Ellipsis: datasource.EllipsisEnd},
	"pid":         {Width: 7, Alignment: datasource.AlignRight},
	"ppid":        {Width: 7, Alignment: datasource.AlignRight},
	"tid":         {Width: 7, Alignment: datasource.AlignRight},
	"uid":         {Width: 8, Alignment: datasource.AlignRight},
	"gid":         {Width: 8, Alignment: datasource.AlignRight},
	"ns":          {Width: 12, Alignment: datasource.AlignRight},
	"timestamp":   {Width: 35, Ellipsis: datasource.EllipsisEnd},
	"syscall":     {Width: 18, Ellipsis: datasource.EllipsisEnd},
	"ipaddr":      {Width: 39, MinWidth: 15},
	"ipport":      {Width: 5, Alignment: datasource.AlignRight},
	"l4endpoint":  {Width: 47, MinWidth: 21},
	"errorString": {Width: 16, Ellipsis: datasource.EllipsisEnd},
}

var alignments = map[string]datasource.Alignment{"left": datasource.AlignLeft, "right": datasource.AlignRight}

var ellipses = map[string]datasource.Ellipsis{
	"none": datasource.EllipsisNone, "end": datasource.EllipsisEnd,
	"start": datasource.EllipsisStart, "middle": datasource.EllipsisMiddle,
}

// applyColumns sets f.Columns from the template and columns.*
// annotations; explicit annotations win over the template. path is the
// field's place in gadget.yaml, for errors.
func applyColumns(f *datasource.Field, ann map[string]string, path string) error {
	if t, ok := ann[annotationTemplate]; ok {
		c, known := fieldTemplates[t]
		if !known {
			return fmt.Errorf("%s.annotations.%s: unknown template %q (expected one of %s)", path, annotationTemplate, t, strings.Join(sortedKeys(fieldTemplates), ", "))
		}
		f.Columns = c
	}
	for key, dst := range map[string]*int{annotationWidth: &f.Columns.Width, annotationMinWidth: &f.Columns.MinWidth, annotationMaxWidth: &f.Columns.MaxWidth} {
		v, ok := ann[key]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n <= 0 {
			return fmt.Errorf("%s.annotations.%s: %q is not a positive number of characters", path, key, v)
		}
		*dst = n
	}
	if f.Columns.MinWidth > 0 && f.Columns.MaxWidth > 0 && f.Columns.MinWidth > f.Columns.MaxWidth {
		return fmt.Errorf("%s.annotations: %s %d is larger than %s %d", path, annotationMinWidth, f.Columns.MinWidth, annotationMaxWidth, f.Columns.MaxWidth)
	}
	if v, ok := ann[annotationAlignment]; ok {
		a, known := alignments[v]
		if !known {
			return fmt.Errorf("%s.annotations.%s: %q is not left or right", path, annotationAlignment, v)
		}
		f.Columns.Alignment = a
	}
	if v, ok := ann[annotationEllipsis]; ok {
		e, known := ellipses[v]
		if !known {
			return fmt.Errorf("%s.annotations.%s: %q is not one of none, start, middle, end", path, annotationEllipsis, v)
		}
		f.Columns.Ellipsis = e
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Param type hints of gadget.yaml (Inspektor Gadget's typeHint) that the
// runtime checks values against, on top of the variable's own type.
var typeHints = map[string]func(string) error{
	"bool":     func(s string) error { _, err := strconv.ParseBool(s); return err },
	"string":   func(string) error { return nil },
	"int":      intHint(64),
	"int8":     intHint(8),
	"int16":    intHint(16),
	"int32":    intHint(32),
	"int64":    intHint(64),
	"uint":     uintHint(64),
	"uint8":    uintHint(8),
	"uint16":   uintHint(16),
	"uint32":   uintHint(32),
	"uint64":   uintHint(64),
	"float32":  func(s string) error { _, err := strconv.ParseFloat(s, 32); return err },
	"float64":  func(s string) error { _, err := strconv.ParseFloat(s, 64); return err },
	"duration": func(s string) error { _, err := time.ParseDuration(s); return err },
}

func intHint(bits int) func(string) error {
	return func(s string) error { _, err := strconv.ParseInt(s, 0, bits); return err }
}

func uintHint(bits int) func(string) error {
	return func(s string) error { _, err := strconv.ParseUint(s, 0, bits); return err }
}

// paramRules are gadget.yaml's checks of one param's values.
type paramRules struct {
	// possible values; empty: any value of the type
	possible []string
	// hint is the typeHint, "" when none
	hint string
}

// check returns an error naming the param and what it accepts when v
// breaks a rule.
func (r paramRules) check(key, v string) error {
	if len(r.possible) > 0 && !slices.Contains(r.possible, v) {
		return fmt.Errorf("param %s: %q is not one of the allowed values %s", key, v, strings.Join(r.possible, ", "))
	}
	if r.hint != "" {
		if err := typeHints[r.hint](v); err != nil {
			return fmt.Errorf("param %s: %q is not a %s (its typeHint)", key, v, r.hint)
		}
	}
	return nil
}
