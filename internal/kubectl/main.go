// Command kubectl is the stock kubectl command line (k8s.io/kubectl at the
// version go.mod requires), part of this module so that the tests that run
// the documented kubectl commands against the test control plane can build
// it from the packages their own build has compiled: a link, instead of a
// second compile of the Kubernetes client libraries. See
// testenv.BuildKubectl.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// Print the error the way kubectl does, and exit non-zero.
		util.CheckErr(err)
	}
}
