package scheduler_test

import (
	"context"
	"fmt"

	"github.com/gadgetpm/gadgetpm/scheduler"
)

func Example() {
	s := scheduler.New(scheduler.Options{})
	_ = s.AddPackage(scheduler.Package{Key: "gadget.net-base", Name: "net-base", Version: "1.1.0", Enabled: true})
	_ = s.AddPackage(scheduler.Package{
		Key: "gadget.trace-dns", Name: "trace-dns", Version: "0.3.0", Enabled: true,
		Requires: []scheduler.Requirement{{Name: "net-base", Constraint: ">=1.2"}},
	})
	s.Resume()
	for range 2 {
		ev := <-s.Events()
		if ev.Enabled {
			fmt.Println(ev.Key, "enabled")
		} else {
			fmt.Println(ev.Key, "disabled:", ev.Reason)
		}
	}
	order, _ := s.Order()
	fmt.Println(order)
	_ = s.Stop(context.Background())
	// Output:
	// gadget.trace-dns disabled: requires net-base >=1.2, found 1.1.0
	// gadget.net-base enabled
	// [gadget.net-base gadget.trace-dns]
}
