package webhookserver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	twclient "github.com/twilio/twilio-go/client"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// Route is one phone number's routing as the cluster declares it.
type Route struct {
	// Number is the E.164 phone number.
	Number string
	// Object is the TwilioPhoneNumber that declares the route.
	Object types.NamespacedName
	// AccountSID is the SID of the referenced TwilioAccount, or "" while that
	// account does not exist.
	AccountSID string
	// AgentURL is the agent's ws:// or wss:// URL, or "" when none is set.
	AgentURL string
	// Record says whether calls are recorded.
	Record bool
	// Enabled is false when spec.voiceRouting is Disabled.
	Enabled bool
}

// RouteSource answers the server's routing questions from memory. All methods
// are safe for concurrent use and never call the API server; returned slices
// must not be modified.
type RouteSource interface {
	// Lookup returns the route of an E.164 number.
	Lookup(number string) (Route, bool)
	// Validators returns signature validators for the account's auth tokens
	// (none when the account or its Secret is unknown).
	Validators(accountSID string) []AccountValidator
	// AllValidators returns the validators of every known account.
	AllValidators() []AccountValidator
	// Synced reports whether the table reflects the cluster (initial sync done).
	Synced() bool
}

// RoutingOptions configures NewRouting.
type RoutingOptions struct {
	// Namespaces limits the watch to these namespaces; empty watches all.
	Namespaces []string
	// Log receives routing table changes and watch problems.
	Log logr.Logger
	// Metrics, when set, gets the routed-numbers gauge updated.
	Metrics *Metrics
	// SecretSyncTimeout bounds how long Start waits for the accounts' Secrets
	// before declaring the table synced anyway (a Secret that cannot be read
	// must not keep every replica unready). Default 30s.
	SecretSyncTimeout time.Duration
}

// authTokenKey is the key of the auth token in an account's credentials Secret.
const authTokenKey = "authToken"

// Routing keeps an in-memory routing table current from the cluster:
// TwilioPhoneNumbers and TwilioAccounts through a controller-runtime cache,
// and, read-only, only the Secrets that those accounts reference, each
// through its own informer narrowed by a metadata.name field selector.
// Every change rebuilds an immutable table that lookups read through an
// atomic pointer, so a Twilio request costs a map lookup, never an API call.
type Routing struct {
	opts    RoutingOptions
	cache   cache.Cache
	secrets kubernetes.Interface

	table  atomic.Pointer[routingTable]
	synced atomic.Bool
	dirty  chan struct{}

	mu       sync.Mutex // guards watches
	watches  map[types.NamespacedName]*secretWatch
	lastSeen map[string]string // number → object key, for change logs
}

type routingTable struct {
	routes    map[string]Route
	byAccount map[string][]AccountValidator
	all       []AccountValidator
}

// NewRouting prepares a Routing that reads through cfg. Nothing is watched
// until Start.
func NewRouting(cfg *rest.Config, opts RoutingOptions) (*Routing, error) {
	if opts.SecretSyncTimeout <= 0 {
		opts.SecretSyncTimeout = 30 * time.Second
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(twiliov1.AddToScheme(scheme))
	copts := cache.Options{Scheme: scheme, DefaultTransform: cache.TransformStripManagedFields()}
	if len(opts.Namespaces) > 0 {
		copts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.Namespaces {
			copts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(cfg, copts)
	if err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create clientset: %w", err)
	}
	r := &Routing{
		opts:     opts,
		cache:    c,
		secrets:  cs,
		dirty:    make(chan struct{}, 1),
		watches:  map[types.NamespacedName]*secretWatch{},
		lastSeen: map[string]string{},
	}
	r.table.Store(&routingTable{routes: map[string]Route{}, byAccount: map[string][]AccountValidator{}})
	return r, nil
}

// Start watches the cluster and keeps the table current until ctx ends. It
// returns an error if the initial sync fails, nil after ctx ends.
func (r *Routing) Start(ctx context.Context) error {
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { r.markDirty() },
		UpdateFunc: func(oldObj, newObj any) {
			if changesRouting(oldObj, newObj) {
				r.markDirty()
			}
		},
		DeleteFunc: func(any) { r.markDirty() },
	}
	for _, obj := range []client.Object{&twiliov1.TwilioPhoneNumber{}, &twiliov1.TwilioAccount{}} {
		inf, err := r.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("get informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("add event handler for %T: %w", obj, err)
		}
	}
	cacheErr := make(chan error, 1)
	go func() { cacheErr <- r.cache.Start(ctx) }()
	defer r.stopAllWatches()
	if !r.cache.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("routing cache did not sync")
	}

	// First build starts the Secret watches; wait (bounded) for them, then
	// build again so the first table readiness reports has the tokens.
	r.rebuild(ctx)
	r.waitForSecrets(ctx)
	r.rebuild(ctx)
	r.synced.Store(true)
	r.opts.Log.Info("Routing table synced", "numbers", len(r.table.Load().routes), "accounts", len(r.table.Load().byAccount))

	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-cacheErr:
			if err != nil {
				return fmt.Errorf("routing cache: %w", err)
			}
			return nil
		case <-r.dirty:
			r.rebuild(ctx)
		}
	}
}

// Synced reports whether the initial sync finished.
func (r *Routing) Synced() bool { return r.synced.Load() }

// Lookup returns the route of number.
func (r *Routing) Lookup(number string) (Route, bool) {
	rt, ok := r.table.Load().routes[number]
	return rt, ok
}

// Validators returns validators for accountSID's auth tokens.
func (r *Routing) Validators(accountSID string) []AccountValidator {
	return r.table.Load().byAccount[accountSID]
}

// AllValidators returns validators for every known account's auth tokens.
func (r *Routing) AllValidators() []AccountValidator { return r.table.Load().all }

// changesRouting reports whether an update can change the table. The
// operator writes status (3 times per number while taking it over, and each
// account's counts every poll); only the spec, and for numbers whether they
// hold a saved original (ownership order), matter here.
func changesRouting(oldObj, newObj any) bool {
	switch o := oldObj.(type) {
	case *twiliov1.TwilioPhoneNumber:
		n, ok := newObj.(*twiliov1.TwilioPhoneNumber)
		return !ok || o.Generation != n.Generation || o.HoldsOriginal() != n.HoldsOriginal()
	case *twiliov1.TwilioAccount:
		n, ok := newObj.(*twiliov1.TwilioAccount)
		return !ok || o.Generation != n.Generation
	}
	return true
}

// markDirty asks the rebuild loop for a new table; bursts of events coalesce.
func (r *Routing) markDirty() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// rebuild computes a new table from the cache and the Secret watches and
// swaps it in. It also starts watches for newly referenced Secrets and stops
// those no longer referenced.
func (r *Routing) rebuild(ctx context.Context) {
	var numbers twiliov1.TwilioPhoneNumberList
	var accounts twiliov1.TwilioAccountList
	if err := r.cache.List(ctx, &numbers, client.UnsafeDisableDeepCopy); err != nil {
		r.opts.Log.Error(err, "List TwilioPhoneNumbers from cache")
		return
	}
	if err := r.cache.List(ctx, &accounts, client.UnsafeDisableDeepCopy); err != nil {
		r.opts.Log.Error(err, "List TwilioAccounts from cache")
		return
	}

	accountSID := map[types.NamespacedName]string{}
	wanted := map[types.NamespacedName]string{} // secret → account SID
	for i := range accounts.Items {
		a := &accounts.Items[i]
		key := types.NamespacedName{Namespace: a.Namespace, Name: a.Name}
		accountSID[key] = a.Spec.AccountSID
		wanted[types.NamespacedName{Namespace: a.Namespace, Name: a.Spec.CredentialsSecretRef.Name}] = a.Spec.AccountSID
	}
	tokens := r.syncWatches(ctx, wanted)

	t := &routingTable{routes: make(map[string]Route, len(numbers.Items)), byAccount: map[string][]AccountValidator{}}
	// A number claimed twice is served for the object the operator lets own
	// it (the other one is in Conflict).
	items := numbers.Items
	sort.Slice(items, func(i, j int) bool { return twiliov1.OwnsBefore(&items[i], &items[j]) })
	for i := range items {
		n := &items[i]
		if _, taken := t.routes[n.Spec.PhoneNumber]; taken {
			continue
		}
		rt := Route{
			Number:     n.Spec.PhoneNumber,
			Object:     types.NamespacedName{Namespace: n.Namespace, Name: n.Name},
			AccountSID: accountSID[types.NamespacedName{Namespace: n.Namespace, Name: n.Spec.AccountRef.Name}],
			Record:     n.RecordingEnabled(),
			Enabled:    n.RoutingEnabled(),
		}
		if n.Spec.Agent != nil {
			rt.AgentURL = n.Spec.Agent.URL
		}
		t.routes[rt.Number] = rt
	}
	// One account can be declared in several namespaces, possibly with
	// different Secrets (e.g. during a token rotation): accept every token.
	seen := map[string]bool{}
	for _, tok := range tokens {
		if seen[tok.sid+"\x00"+tok.token] {
			continue
		}
		seen[tok.sid+"\x00"+tok.token] = true
		av := AccountValidator{AccountSID: tok.sid, Validator: twclient.NewRequestValidator(tok.token)}
		t.byAccount[tok.sid] = append(t.byAccount[tok.sid], av)
		t.all = append(t.all, av)
	}
	r.table.Store(t)
	if r.opts.Metrics != nil {
		r.opts.Metrics.RoutedNumbers.Set(float64(len(t.routes)))
	}
	r.logChanges(t)
}

type accountToken struct{ sid, token string }

// syncWatches makes the set of Secret watches equal wanted and returns the
// auth tokens currently known, ordered by Secret key for a stable table.
func (r *Routing) syncWatches(ctx context.Context, wanted map[types.NamespacedName]string) []accountToken {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, w := range r.watches {
		if _, ok := wanted[key]; !ok {
			w.stop()
			delete(r.watches, key)
			r.opts.Log.V(1).Info("Stopped watching Secret", "secret", key.String())
		}
	}
	keys := make([]types.NamespacedName, 0, len(wanted))
	for key := range wanted {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	var out []accountToken
	for _, key := range keys {
		w, ok := r.watches[key]
		if !ok {
			w = startSecretWatch(ctx, r.secrets, key, r.markDirty)
			r.watches[key] = w
			r.opts.Log.V(1).Info("Watching Secret", "secret", key.String())
		}
		if tok, ok := w.token(); ok {
			out = append(out, accountToken{sid: wanted[key], token: tok})
		}
	}
	return out
}

func (r *Routing) waitForSecrets(ctx context.Context) {
	r.mu.Lock()
	var synced []toolscache.InformerSynced
	for _, w := range r.watches {
		synced = append(synced, w.informer.HasSynced)
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.opts.SecretSyncTimeout)
	defer cancel()
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.opts.Log.Info("Some account Secrets did not sync in time; their numbers' requests are refused until they do", "timeout", r.opts.SecretSyncTimeout)
	}
}

func (r *Routing) stopAllWatches() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, w := range r.watches {
		w.stop()
		delete(r.watches, key)
	}
}

// logChanges logs numbers added to or removed from the table (only the
// rebuild loop calls it, so lastSeen needs no lock of its own).
func (r *Routing) logChanges(t *routingTable) {
	for num, rt := range t.routes {
		if r.lastSeen[num] != rt.Object.String() {
			r.opts.Log.V(1).Info("Number routed", "number", num, "object", rt.Object.String(), "enabled", rt.Enabled)
		}
	}
	for num := range r.lastSeen {
		if _, ok := t.routes[num]; !ok {
			r.opts.Log.V(1).Info("Number no longer routed", "number", num)
		}
	}
	seen := make(map[string]string, len(t.routes))
	for num, rt := range t.routes {
		seen[num] = rt.Object.String()
	}
	r.lastSeen = seen
}
