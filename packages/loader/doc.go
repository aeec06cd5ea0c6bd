// Package loader reads an extracted gadget package and checks every part
// of it: the chart (Helm's loader), values.schema.json and the default
// values against it, gadget/gadget.yaml (typed; unknown keys rejected with
// their line), gadget/program.bpf.o (parsed with cilium/ebpf; BTF
// required; the catalog of data sources, fields and params comes from
// it), the properties values.schema.json marks "x-secret": true (for the
// dump to redact), hooks/ (every executable, sorted, run with --config under a
// timeout, configs checked) and the requirements in Chart.yaml
// (kubeVersion, gadgetpm.io/requires, gadgetpm.io/order).
//
// Check reports every problem with its file and line, for
// 'gadgetpm package lint'; Load returns the package or a *Error holding
// the same problems. ValidateSettings checks a GadgetPackage's settings
// against the schema.
//
// The loader never installs anything, contacts a cluster or loads eBPF
// into the kernel. Hook configs are checked by pkg/hooks' parser, the one
// the operator runs hooks with.
package loader
