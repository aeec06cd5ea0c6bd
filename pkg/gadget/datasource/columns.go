package datasource

import (
	"strings"
	"unicode/utf8"
)

// Alignment of a value in its column.
type Alignment uint8

// Alignments; the zero value is AlignLeft.
const (
	AlignLeft Alignment = iota
	AlignRight
)

// Ellipsis says how a value wider than its column is cut.
type Ellipsis uint8

// Ellipsis modes. The zero value, EllipsisUnset, never cuts: a wide
// value pushes the columns after it to the right.
const (
	EllipsisUnset Ellipsis = iota
	// EllipsisNone cuts the value at the column's width without a mark.
	EllipsisNone
	// EllipsisEnd keeps the start and ends with "…".
	EllipsisEnd
	// EllipsisStart keeps the end and starts with "…".
	EllipsisStart
	// EllipsisMiddle keeps both ends with "…" between them.
	EllipsisMiddle
)

// Columns is how `-o columns` lays out one field (Inspektor Gadget's
// columns.* annotations). Zero values are the defaults.
type Columns struct {
	// Width of the column; default by kind.
	Width int
	// MinWidth and MaxWidth bound the width (0: no bound).
	MinWidth, MaxWidth int
	// Alignment of the value; default left.
	Alignment Alignment
	// Ellipsis cuts values wider than the column; default: never cut.
	Ellipsis Ellipsis
}

// ColumnLayout lays out the visible fields of a data source as aligned
// columns. It is read-only once built and safe for concurrent use.
type ColumnLayout struct {
	fields []*Field
	widths []int
}

// ColumnLayout returns the data source's column layout: every field that
// is neither Hidden nor Raw, in layout order.
func (ds *DataSource) ColumnLayout() *ColumnLayout {
	l := &ColumnLayout{}
	for _, f := range ds.fields {
		if f.Hidden || f.Raw {
			continue
		}
		l.fields = append(l.fields, f)
		l.widths = append(l.widths, f.columnWidth())
	}
	return l
}

// columnWidth is the Width annotation or a width by kind, at least the
// name's, within MinWidth and MaxWidth.
func (f *Field) columnWidth() int {
	w := f.Columns.Width
	if w <= 0 {
		switch f.Kind {
		case KindString:
			w = int(f.Size)
		case KindStringList:
			w = 40
		case KindTimestamp:
			w = 30
		case KindIPv4:
			w = 15
		case KindL3Endpoint:
			w = 39
		case KindL4Endpoint:
			w = 47
		case KindSyscall:
			w = 16
		case KindSignal:
			w = 9
		case KindMntNsID:
			w = 10
		default:
			w = 7
		}
	}
	if n := len(f.Name); n > w {
		w = n
	}
	if f.Columns.MinWidth > 0 && w < f.Columns.MinWidth {
		w = f.Columns.MinWidth
	}
	if f.Columns.MaxWidth > 0 && w > f.Columns.MaxWidth {
		w = f.Columns.MaxWidth
	}
	return w
}

// AppendHeader appends the header line (upper-case field names), without
// a newline.
func (l *ColumnLayout) AppendHeader(dst []byte) []byte {
	for i, f := range l.fields {
		dst = l.appendCell(dst, i, []byte(strings.ToUpper(f.Name)))
	}
	return dst
}

// AppendRow appends r's values as one line, without a newline.
func (l *ColumnLayout) AppendRow(dst []byte, r *Record, c Clock) []byte {
	var cell []byte
	for i, f := range l.fields {
		cell = f.AppendText(cell[:0], r, c)
		dst = l.appendCell(dst, i, cell)
	}
	return dst
}

// appendCell writes one value cut, aligned and padded to its column;
// columns are separated by one space and the last is not padded on the
// right.
func (l *ColumnLayout) appendCell(dst []byte, i int, s []byte) []byte {
	f, w := l.fields[i], l.widths[i]
	last := i == len(l.fields)-1
	if i > 0 {
		dst = append(dst, ' ')
	}
	s = cut(s, w, f.Columns.Ellipsis)
	pad := w - utf8.RuneCount(s)
	if f.Columns.Alignment == AlignRight {
		for ; pad > 0; pad-- {
			dst = append(dst, ' ')
		}
		return append(dst, s...)
	}
	dst = append(dst, s...)
	if !last {
		for ; pad > 0; pad-- {
			dst = append(dst, ' ')
		}
	}
	return dst
}

const ellipsis = "…"

// cut shortens s to w runes as mode says.
func cut(s []byte, w int, mode Ellipsis) []byte {
	n := utf8.RuneCount(s)
	if mode == EllipsisUnset || n <= w || w <= 0 {
		return s
	}
	runes := []rune(string(s))
	var out string
	switch mode {
	case EllipsisNone:
		out = string(runes[:w])
	case EllipsisStart:
		out = ellipsis + string(runes[n-(w-1):])
	case EllipsisMiddle:
		head := (w - 1) / 2
		tail := w - 1 - head
		out = string(runes[:head]) + ellipsis + string(runes[n-tail:])
	default:
		out = string(runes[:w-1]) + ellipsis
	}
	return []byte(out)
}
