package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// readyTracker watches TwilioPhoneNumbers (with its own informer, outside the
// operator's counted client) and records when each namespace, and then all
// of them, had every number Ready. A watch costs the API server nothing per
// check, whereas listing 10,000 numbers every 100 ms would load it (and the 2
// cores it shares with the operator) more than the operator does.
type readyTracker struct {
	mu      sync.Mutex
	want    map[string]int       // namespace → numbers
	ready   map[string]bool      // namespace/name → Ready
	readyNS map[string]int       // namespace → Ready numbers
	doneNS  map[string]time.Time // namespace → when all its numbers were first Ready
	total   int                  // Ready numbers
	n       int
	allAt   time.Time
	all     chan struct{} // closed when all n numbers are Ready
}

func newReadyTracker(accts []benchAccount) *readyTracker {
	t := &readyTracker{want: map[string]int{}, ready: map[string]bool{}, readyNS: map[string]int{},
		doneNS: map[string]time.Time{}, all: make(chan struct{})}
	for _, a := range accts {
		t.want[a.namespace] = a.count
		t.n += a.count
	}
	return t
}

// start runs the informer until ctx ends and returns once it has synced.
func (t *readyTracker) start(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme) error {
	c, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	inf, err := c.GetInformer(ctx, &twiliov1.TwilioPhoneNumber{})
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(obj, false) },
		UpdateFunc: func(_, obj any) { t.observe(obj, false) },
		DeleteFunc: func(obj any) { t.observe(obj, true) },
	}); err != nil {
		return err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return fmt.Errorf("TwilioPhoneNumber informer did not sync")
	}
	return nil
}

func (t *readyTracker) observe(obj any, deleted bool) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pn, ok := obj.(*twiliov1.TwilioPhoneNumber)
	if !ok {
		return
	}
	now := time.Now()
	key := pn.Namespace + "/" + pn.Name
	isReady := !deleted && meta.IsStatusConditionTrue(pn.Status.Conditions, twiliov1.ConditionReady)

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ready[key] == isReady {
		return
	}
	t.ready[key] = isReady
	d := 1
	if !isReady {
		d = -1
	}
	t.readyNS[pn.Namespace] += d
	t.total += d
	if _, done := t.doneNS[pn.Namespace]; !done && t.readyNS[pn.Namespace] == t.want[pn.Namespace] {
		t.doneNS[pn.Namespace] = now
	}
	if t.allAt.IsZero() && t.total == t.n {
		t.allAt = now
		close(t.all)
	}
}

// wait returns when every number was Ready at once, and when that happened.
// Every 30s it reports progress on stderr.
func (t *readyTracker) wait(ctx context.Context, limit time.Duration) (time.Time, error) {
	start := time.Now()
	deadline := time.After(limit)
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.all:
			t.mu.Lock()
			defer t.mu.Unlock()
			return t.allAt, nil
		case <-tick.C:
			t.mu.Lock()
			fmt.Fprintf(os.Stderr, "converge: %d of %d numbers Ready after %s\n", t.total, t.n, time.Since(start).Round(time.Second))
			t.mu.Unlock()
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-deadline:
			t.mu.Lock()
			defer t.mu.Unlock()
			return time.Time{}, fmt.Errorf("%d of %d numbers Ready after %s", t.total, t.n, limit)
		}
	}
}

// accountsDone returns, by namespace, when it first had all its numbers Ready.
func (t *readyTracker) accountsDone() map[string]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.doneNS)
}
