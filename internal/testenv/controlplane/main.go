package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

func main() {
	kubeconfig := flag.String("out", "", "where to write the control plane's kubeconfig (written last: its presence says the control plane is ready)")
	flag.Parse()
	if err := run(*kubeconfig); err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeconfig string) error {
	if kubeconfig == "" {
		return fmt.Errorf("-out is required: the path the test binaries read through %s", testenv.SharedKubeconfigEnv)
	}
	// The script that started us may be killed outright: never outlive it.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0); err != nil {
		return fmt.Errorf("set the parent-death signal: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// this is the control plane the others share: start one of our own
	if err := os.Unsetenv(testenv.SharedKubeconfigEnv); err != nil {
		return err
	}
	begin := time.Now()
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(kubeconfig), "."+filepath.Base(kubeconfig)+".tmp")
	if err := env.WriteKubeconfigFile(tmp); err == nil {
		err = os.Rename(tmp, kubeconfig)
	}
	if err != nil {
		_ = env.Stop()
		return fmt.Errorf("publish the kubeconfig: %w", err)
	}
	fmt.Fprintf(os.Stderr, "controlplane: kube-apiserver and etcd up, CRDs installed, in %.1fs (%s)\n", time.Since(begin).Seconds(), env.Config.Host)
	<-ctx.Done()
	if err := env.Stop(); err != nil {
		return fmt.Errorf("stop the control plane: %w", err)
	}
	return nil
}
