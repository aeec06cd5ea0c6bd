package ebpfstage

import (
	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// Optional programs (GADGET_PROGRAM_OPTIONAL of igabi/gadget.h) are left
// out of a run when the kernel refuses to load or attach them; the run goes
// on with the others and the log says which program, where it attaches,
// on which kernel and why. A program without the marker fails the run.

// dropOptional leaves an optional program the kernel refused at load time
// out of the collection, once; it reports whether it did.
func (i *instance) dropOptional(gctx *gadget.Context, prog string, err error) bool {
	if !i.spec.optional[prog] || i.dropped[prog] != nil {
		return false
	}
	i.dropped[prog] = err
	i.skipOptional(gctx, prog, i.loadError(err))
	return true
}

// skipOptional logs that an optional program does not run.
func (i *instance) skipOptional(gctx *gadget.Context, prog string, reason error) {
	section := ""
	if ps, ok := i.spec.coll.Programs[prog]; ok {
		section = ps.SectionName
	}
	gctx.Logger().Warn("skipped an optional program the kernel cannot run", "gadget", i.name, "program", prog, "section", section, "kernel", kernelRelease(), "reason", reason.Error())
}
