package webhookserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/credentials"
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
	// AgentHeaders are sent on the handshake to the agent (from the labelled
	// Secret spec.agent.headersSecretRef names, as the manager published it);
	// nil when none.
	AgentHeaders http.Header
	// Record says whether calls are recorded.
	Record bool
	// Enabled is false when spec.voiceRouting is Disabled.
	Enabled bool
	// Fallback is the action FallbackTwiML carries out (Say, Dial or
	// Original; an Original without a saved Voice URL is Say), "" without
	// one; for logs.
	Fallback twiliov1.FallbackAction
	// FallbackTwiML is the number's fallback (spec.fallback, and for
	// Original status.savedRouting's Voice URL and method) rendered once,
	// when the table is built, by RenderFallback: the escaped verbs that
	// follow </Connect> in a call's answer, where Twilio goes on when the
	// stream ends without the call being hung up; "" for none. It is put in
	// the answer as it is, so it must come from RenderFallback.
	FallbackTwiML string
	// EventSinkURL is where the number's events (recordings, messages) are
	// delivered as CloudEvents: its spec.events.sink.url, else its
	// TwilioAccount's (as the manager published it), else "" (none: events
	// are logged and counted only).
	EventSinkURL string
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
	// Synced reports whether the table reflects the cluster (initial sync done).
	Synced() bool
}

// RoutingOptions configures NewRouting.
type RoutingOptions struct {
	// Namespaces limits the watch to these namespaces; empty watches all.
	Namespaces []string
	// CredentialsSecret is the Secret where the manager publishes the auth
	// tokens of the TwilioAccounts it verified (internal/credentials). It is
	// the only Secret the routing reads.
	CredentialsSecret types.NamespacedName
	// Log receives routing table changes and watch problems.
	Log logr.Logger
	// Metrics, when set, gets the routed-numbers gauge updated.
	Metrics *Metrics
	// SecretSyncTimeout bounds how long Start waits for the credentials
	// Secret before declaring the table synced anyway (a Secret that cannot
	// be read must not keep every replica unready). Default 30s.
	SecretSyncTimeout time.Duration
}

// Routing keeps an in-memory routing table current from the cluster:
// TwilioPhoneNumbers and TwilioAccounts through a controller-runtime cache,
// and the manager's published credentials Secret through an informer
// narrowed to its name. Every change rebuilds an immutable table that lookups
// read through an atomic pointer, so a Twilio request costs a map lookup,
// never an API call.
//
// Trust: a number is routed only for the claim the operator let win (the
// TwilioPhoneNumber found in its account, not in Conflict; ranked by
// operator-written status), and only when its TwilioAccount is one the
// manager verified and published; its webhooks verify only under that
// account's published token.
type Routing struct {
	opts    RoutingOptions
	cache   cache.Cache
	secrets kubernetes.Interface

	table  atomic.Pointer[routingTable]
	synced atomic.Bool
	dirty  chan struct{}

	creds    *secretWatch
	lastSeen map[string]string // number → object key, for change logs
}

type routingTable struct {
	routes    map[string]Route
	byAccount map[string][]AccountValidator
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
	if opts.CredentialsSecret.Name == "" || opts.CredentialsSecret.Namespace == "" {
		return nil, errors.New("the credentials Secret (namespace/name) is required")
	}
	r := &Routing{
		opts:     opts,
		cache:    c,
		secrets:  cs,
		dirty:    make(chan struct{}, 1),
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
	for _, obj := range []client.Object{&twiliov1.TwilioPhoneNumber{}} {
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
	r.creds = startSecretWatch(ctx, r.secrets, r.opts.CredentialsSecret, credentials.Key, r.markDirty)
	defer r.creds.stop()
	if !r.cache.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("routing cache did not sync")
	}
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

// changesRouting reports whether an update can change the table. The
// operator writes status (3 times per number while taking it over, and each
// account's counts every poll); only the spec (spec.fallback included), and
// for numbers the facts the ownership order reads and the saved Voice URL
// and method an Original fallback redirects to, matter here.
func changesRouting(oldObj, newObj any) bool {
	switch o := oldObj.(type) {
	case *twiliov1.TwilioPhoneNumber:
		n, ok := newObj.(*twiliov1.TwilioPhoneNumber)
		return !ok || o.Generation != n.Generation || o.HoldsOriginal() != n.HoldsOriginal() || claimable(o) != claimable(n) ||
			savedVoice(o) != savedVoice(n)
	}
	return true
}

// savedVoice is the part of a number's saved routing its fallback reads.
func savedVoice(n *twiliov1.TwilioPhoneNumber) [2]string {
	if n.Status.SavedRouting == nil {
		return [2]string{}
	}
	return [2]string{n.Status.SavedRouting.VoiceURL, n.Status.SavedRouting.VoiceMethod}
}

// markDirty asks the rebuild loop for a new table; bursts of events coalesce.
func (r *Routing) markDirty() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// claimable reports whether the operator has established the object's claim
// on its number: it found the number in the object's account, and did not
// find an older claim (Conflict).
func claimable(n *twiliov1.TwilioPhoneNumber) bool {
	c := meta.FindStatusCondition(n.Status.Conditions, twiliov1.ConditionReady)
	return n.Status.PhoneNumberSID != "" && (c == nil || c.Reason != twiliov1.ReasonConflict)
}

// rebuild computes a new table from the cache and the published credentials
// and swaps it in.
func (r *Routing) rebuild(ctx context.Context) {
	var numbers twiliov1.TwilioPhoneNumberList
	if err := r.cache.List(ctx, &numbers, client.UnsafeDisableDeepCopy); err != nil {
		r.opts.Log.Error(err, "List TwilioPhoneNumbers from cache")
		return
	}
	published, agentHeaders := r.published()

	t := &routingTable{routes: make(map[string]Route, len(numbers.Items)), byAccount: map[string][]AccountValidator{}}
	// A number claimed twice is served for the object the operator lets own
	// it (the other one is in Conflict).
	items := numbers.Items
	sort.Slice(items, func(i, j int) bool { return twiliov1.OwnsBefore(&items[i], &items[j]) })
	for i := range items {
		n := &items[i]
		acct, verified := published[types.NamespacedName{Namespace: n.Namespace, Name: n.Spec.AccountRef.Name}]
		if _, taken := t.routes[n.Spec.PhoneNumber]; taken || !verified || !claimable(n) {
			continue
		}
		rt := Route{
			Number:     n.Spec.PhoneNumber,
			Object:     types.NamespacedName{Namespace: n.Namespace, Name: n.Name},
			AccountSID: acct.AccountSID,
			Record:     n.RecordingEnabled(),
			Enabled:    n.RoutingEnabled(),
		}
		if n.Spec.Agent != nil {
			rt.AgentURL = n.Spec.Agent.URL
			if ref := n.Spec.Agent.HeadersSecretRef; ref != nil {
				rt.AgentHeaders = agentHeaders[types.NamespacedName{Namespace: n.Namespace, Name: ref.Name}]
			}
		}
		rt.EventSinkURL = acct.EventSinkURL
		if e := n.Spec.Events; e != nil && e.Sink != nil && e.Sink.URL != "" {
			rt.EventSinkURL = e.Sink.URL
		}
		r.setFallback(&rt, n)
		t.routes[rt.Number] = rt
	}
	// Accounts in namespaces allowed to share a SID may carry different
	// tokens (e.g. during a rotation): each one verified counts.
	keys := make([]types.NamespacedName, 0, len(published))
	for k := range published {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	seen := map[string]bool{}
	for _, k := range keys {
		a := published[k]
		if seen[a.AccountSID+"\x00"+a.AuthToken] {
			continue
		}
		seen[a.AccountSID+"\x00"+a.AuthToken] = true
		t.byAccount[a.AccountSID] = append(t.byAccount[a.AccountSID], NewAccountValidator(a.AccountSID, a.AuthToken))
	}
	r.table.Store(t)
	if r.opts.Metrics != nil {
		r.opts.Metrics.RoutedNumbers.Set(float64(len(t.routes)))
	}
	r.logChanges(t)
}

// setFallback renders n's fallback into rt. Rendering does not fail in
// practice (twiml writes to memory); if it did, the number would be served
// without a fallback, and that is logged.
func (r *Routing) setFallback(rt *Route, n *twiliov1.TwilioPhoneNumber) {
	frag, action, err := RenderFallback(n.Spec.Fallback, n.Status.SavedRouting)
	if err != nil {
		r.opts.Log.Error(err, "Render the number's fallback; its calls get none", "object", rt.Object.String())
		return
	}
	rt.Fallback, rt.FallbackTwiML = action, frag
}

// published returns the verified accounts from the credentials Secret, and
// the agent headers published with them (by the Secret they come from).
func (r *Routing) published() (map[types.NamespacedName]credentials.Account, map[types.NamespacedName]http.Header) {
	out := map[types.NamespacedName]credentials.Account{}
	headers := map[types.NamespacedName]http.Header{}
	data, ok := r.creds.value()
	if !ok {
		return out, headers
	}
	p, err := credentials.Parse(data)
	if err != nil {
		r.opts.Log.Error(err, "Unreadable credentials Secret; refusing every webhook until it is fixed", "secret", r.opts.CredentialsSecret.String())
		return out, headers
	}
	for _, a := range p.Accounts {
		if a.AuthToken != "" && a.AccountSID != "" {
			out[types.NamespacedName{Namespace: a.Namespace, Name: a.Name}] = a
		}
	}
	for _, ah := range p.AgentHeaders {
		h := http.Header{}
		for k, v := range ah.Headers {
			h.Set(k, v)
		}
		headers[types.NamespacedName{Namespace: ah.Namespace, Name: ah.Secret}] = h
	}
	return out, headers
}

func (r *Routing) waitForSecrets(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.SecretSyncTimeout)
	defer cancel()
	if !toolscache.WaitForCacheSync(ctx.Done(), r.creds.informer.HasSynced) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.opts.Log.Info("The credentials Secret did not sync in time; requests are refused until it does", "timeout", r.opts.SecretSyncTimeout, "secret", r.opts.CredentialsSecret.String())
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
