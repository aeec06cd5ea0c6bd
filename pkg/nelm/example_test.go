package nelm_test

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	helmloader "helm.sh/helm/v3/pkg/chart/loader"
	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// The coordinator's use: one Service, an upgrade per Run, drift reports
// turned into new Runs, monitors stopped on shutdown.
func ExampleService() {
	ctx := context.Background()
	var cfg *rest.Config           // the operator's
	var gp *v1alpha1.GadgetPackage // the package being run

	s, err := nelm.New(cfg, nelm.Options{MonitorInterval: 4 * time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	// The drift reader belongs to this function: Drifts is never closed,
	// so it stops on its own signal and is waited for, after the monitors
	// are stopped (defers run last first).
	stop := make(chan struct{})
	var readers sync.WaitGroup
	defer readers.Wait()
	defer close(stop)
	defer s.StopMonitors()
	readers.Go(func() {
		for {
			select {
			case d := <-s.Drifts():
				fmt.Printf("enqueue a Run of %s: %v missing\n", d.Package.Key(), d.Missing)
			case <-stop:
				return
			}
		}
	})

	ch, err := helmloader.Load("/var/lib/gadgetpm/packages/trace-exec")
	if err != nil {
		log.Fatal(err)
	}
	pkg := nelm.PackageFor(gp)
	res, err := s.Upgrade(ctx, pkg, ch, map[string]any{"interval": "5s"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Action, res.Revision)
}
