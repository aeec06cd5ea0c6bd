// Package version reports what the gadgetpm binary was built from: its own
// version and commit (stamped by the Makefile through -ldflags), the Go
// toolchain, and the Helm SDK and Kubernetes client modules it links.
package version

import (
	"runtime"
	"runtime/debug"
)

// Set at link time by the Makefile:
//
//	-X github.com/gadgetpm/gadgetpm/internal/version.version=v0.1.0
//	-X github.com/gadgetpm/gadgetpm/internal/version.commit=abc1234
var (
	version = "v0.0.0-dev"
	commit  = "unknown"
)

// Info describes a build.
type Info struct {
	Version           string `json:"version"`
	Commit            string `json:"commit"`
	Go                string `json:"go"`
	Platform          string `json:"platform"`
	Helm              string `json:"helm"`
	Kubernetes        string `json:"kubernetes"`
	ControllerRuntime string `json:"controllerRuntime"`
	CiliumEBPF        string `json:"ciliumEBPF"`
}

// Get returns the running binary's build information. Module versions come
// from the build info Go embeds in every binary, so they cannot drift from
// what was actually linked.
func Get() Info {
	info := Info{
		Version:  version,
		Commit:   commit,
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = &debug.BuildInfo{}
	}
	for _, dep := range bi.Deps {
		v := dep.Version
		if dep.Replace != nil {
			v = dep.Replace.Version
		}
		switch dep.Path {
		case "helm.sh/helm/v3":
			info.Helm = v
		case "k8s.io/client-go":
			info.Kubernetes = v
		case "sigs.k8s.io/controller-runtime":
			info.ControllerRuntime = v
		case "github.com/cilium/ebpf":
			info.CiliumEBPF = v
		}
	}
	for _, f := range []*string{&info.Helm, &info.Kubernetes, &info.ControllerRuntime, &info.CiliumEBPF} {
		if *f == "" {
			*f = "not linked"
		}
	}
	return info
}
