package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/preflight"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// Plan actions: what the operator will do, or why it will do nothing.
const (
	actTakeOver         = "TakeOver"
	actAlreadyRouted    = "AlreadyRouted"
	actHandBack         = "HandBack"
	actNoChange         = "NoChange"
	actConflict         = twiliov1.ReasonConflict
	actAccountNotReady  = twiliov1.ReasonAccountNotReady
	actNumberNotFound   = twiliov1.ReasonNumberNotFound
	actNoAgent          = twiliov1.ReasonNoAgent
	actAgentNotAllowed  = twiliov1.ReasonAgentNotAllowed
	actTrunkAttached    = twiliov1.ReasonTrunkAttached
	actContested        = twiliov1.ReasonContested
	actPreflightFailing = "PreflightFailing"
	actBuy              = "Buy"
	actPurchaseRefused  = twiliov1.ReasonPurchaseNotAllowed
	// actInvalid: the API server would refuse the file's object.
	actInvalid = "Invalid"
	// actUnknown: the plan could not be made for the object (exit status 1).
	actUnknown = "Unknown"
)

// actionOrder is the order of the summary.
var actionOrder = []string{actBuy, actPurchaseRefused, actTakeOver, actAlreadyRouted, actHandBack, actNoChange, actConflict, actAccountNotReady,
	actNumberNotFound, actNoAgent, actAgentNotAllowed, actTrunkAttached, actContested, actPreflightFailing, actInvalid, actUnknown}

var e164 = regexp.MustCompile(`^[+][1-9][0-9]{1,14}$`)

// planned is one TwilioPhoneNumber to plan: the file's spec over the
// cluster's object (metadata and status), or the cluster's object.
type planned struct {
	obj *twiliov1.TwilioPhoneNumber
	// cluster is the cluster's copy, nil when the object does not exist yet.
	cluster *twiliov1.TwilioPhoneNumber
	// invalid says why the API server would refuse the file's object.
	invalid string

	action, detail string
	account        *planAccount // set once the account was resolved
}

// planAccount is one TwilioAccount as the plan found it; its numbers are
// listed at most once.
type planAccount struct {
	key      types.NamespacedName
	obj      *twiliov1.TwilioAccount
	fromFile bool
	// notReady says why the operator would not use the account, "" when it would.
	notReady string
	// err says why the plan cannot tell.
	err error

	listed  bool
	numbers map[string]twilio.Number // by E.164

	preflightErr error // the account's preflight (--preflight), nil when it passed
}

type planner struct {
	k8s       client.Reader // the cluster: the plan only reads
	secrets   client.Reader // file Secrets, then the cluster's
	connector *controllers.Connector
	files     *fileSet // nil without -f
	voice     voiceTarget
	// all is every TwilioPhoneNumber the plan knows, as it would be after
	// applying the files: rivals for Conflicts.
	all      []*twiliov1.TwilioPhoneNumber
	accounts map[types.NamespacedName]*planAccount
	// plannedAccounts are the accounts of the planned objects: their numbers
	// are listed anyway.
	plannedAccounts map[types.NamespacedName]bool
}

func plan(ctx context.Context, o options, stdin io.Reader, stdout, stderr io.Writer) error {
	k8s, ns, err := kube(o)
	if err != nil {
		return err
	}
	p := &planner{
		k8s:             k8s,
		accounts:        map[types.NamespacedName]*planAccount{},
		plannedAccounts: map[types.NamespacedName]bool{},
	}
	if len(o.files) > 0 {
		if p.files, err = readFiles(o.files, stdin, ns); err != nil {
			return err
		}
		if note := p.files.ignoredNote(); note != "" {
			_, _ = fmt.Fprintln(stderr, "kubectl twilio plan:", note)
		}
		if len(p.files.numbers) == 0 {
			return fmt.Errorf("no TwilioPhoneNumber in %s", strings.Join(o.files, ", "))
		}
	}
	secrets := map[types.NamespacedName]*corev1.Secret{}
	if p.files != nil {
		secrets = p.files.secrets
	}
	p.secrets = overlayReader{Reader: k8s, secrets: secrets}
	p.connector = &controllers.Connector{Reader: p.secrets, DefaultMaxConcurrent: 1, AllowedAPIURLs: egress.SplitList(o.allowedAPIURLs)}

	namespaces := []string{ns}
	if p.files != nil {
		for _, n := range p.files.numbers {
			if !slices.Contains(namespaces, n.Namespace) {
				namespaces = append(namespaces, n.Namespace)
			}
		}
	}
	cluster, err := p.listCluster(ctx, namespaces, stderr)
	if err != nil {
		return err
	}
	items := p.merge(cluster, ns)
	if len(items) == 0 {
		_, err := fmt.Fprintf(stdout, "No TwilioPhoneNumbers in namespace %s: nothing to plan\n", ns)
		return err
	}
	var inNamespaces []*twiliov1.TwilioPhoneNumber
	for _, c := range cluster {
		if slices.Contains(namespaces, c.Namespace) {
			inNamespaces = append(inNamespaces, c)
		}
	}
	if p.voice, err = resolveVoiceTarget(o.publicURL, o.installID, inNamespaces, cluster); err != nil {
		return err
	}
	if o.preflight && p.voice.url == "" {
		return fmt.Errorf("--preflight needs the operator's voice URL, which is %s", p.voice.source)
	}
	for _, it := range items {
		p.plannedAccounts[types.NamespacedName{Namespace: it.obj.Namespace, Name: it.obj.Spec.AccountRef.Name}] = true
	}
	for _, it := range items {
		p.decide(ctx, it)
	}
	if o.preflight {
		p.preflight(ctx, items)
	}
	return printPlan(stdout, items, p.voice)
}

// listCluster lists the cluster's TwilioPhoneNumbers: in all namespaces
// (Conflicts span namespaces), else, when that is forbidden, in those of
// the plan.
func (p *planner) listCluster(ctx context.Context, namespaces []string, stderr io.Writer) ([]*twiliov1.TwilioPhoneNumber, error) {
	var list twiliov1.TwilioPhoneNumberList
	err := p.k8s.List(ctx, &list)
	if apierrors.IsForbidden(err) {
		_, _ = fmt.Fprintf(stderr, "kubectl twilio plan: cannot list TwilioPhoneNumbers in all namespaces (%v); Conflicts with objects of other namespaces are not shown\n", err)
		list.Items = nil
		for _, ns := range namespaces {
			var in twiliov1.TwilioPhoneNumberList
			if err := p.k8s.List(ctx, &in, client.InNamespace(ns)); err != nil {
				return nil, fmt.Errorf("list TwilioPhoneNumbers in %s: %w", ns, err)
			}
			list.Items = append(list.Items, in.Items...)
		}
	} else if err != nil {
		return nil, fmt.Errorf("list TwilioPhoneNumbers: %w", err)
	}
	out := make([]*twiliov1.TwilioPhoneNumber, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// merge builds the objects to plan (the files' or the namespace's) and
// p.all, the cluster as it would be after applying the files.
func (p *planner) merge(cluster []*twiliov1.TwilioPhoneNumber, ns string) []*planned {
	byKey := map[types.NamespacedName]*twiliov1.TwilioPhoneNumber{}
	for _, c := range cluster {
		byKey[client.ObjectKeyFromObject(c)] = c
	}
	var items []*planned
	if p.files == nil {
		for _, c := range cluster {
			if c.Namespace == ns {
				items = append(items, &planned{obj: c, cluster: c})
			}
		}
		p.all = cluster
	} else {
		// Objects created now are younger than every existing one.
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		replaced := map[types.NamespacedName]bool{}
		for _, f := range p.files.numbers {
			key := client.ObjectKeyFromObject(f)
			it := &planned{cluster: byKey[key]}
			if it.cluster == nil {
				it.obj = f.DeepCopy()
				it.obj.CreationTimestamp = now
				it.obj.UID = ""
				it.obj.Status = twiliov1.TwilioPhoneNumberStatus{} // the API server ignores a created object's status
			} else {
				it.obj = it.cluster.DeepCopy()
				it.obj.Spec = f.Spec
			}
			it.invalid = invalidChange(f, it.cluster)
			if it.invalid == "" {
				replaced[key] = true
				p.all = append(p.all, it.obj)
			}
			items = append(items, it)
		}
		for _, c := range cluster {
			if !replaced[client.ObjectKeyFromObject(c)] {
				p.all = append(p.all, c)
			}
		}
	}
	slices.SortFunc(items, func(a, b *planned) int { return strings.Compare(objName(a.obj), objName(b.obj)) })
	return items
}

// invalidChange says why the API server would refuse the file's object (a
// new one, or a change to the cluster's), "" when it would accept it. It
// checks what the plan depends on, not the whole schema.
func invalidChange(f, cluster *twiliov1.TwilioPhoneNumber) string {
	switch {
	case !e164.MatchString(f.Spec.PhoneNumber):
		return fmt.Sprintf("spec.phoneNumber %q is not in E.164 form (for example +14155550100)", f.Spec.PhoneNumber)
	case f.Spec.AccountRef.Name == "":
		return "spec.accountRef.name is required"
	case f.Spec.VoiceRouting != "" && f.Spec.VoiceRouting != twiliov1.VoiceRoutingEnabled && f.Spec.VoiceRouting != twiliov1.VoiceRoutingDisabled:
		return fmt.Sprintf("spec.voiceRouting must be Enabled or Disabled, not %q", f.Spec.VoiceRouting)
	case cluster == nil:
		return ""
	case cluster.Spec.PhoneNumber != f.Spec.PhoneNumber:
		return fmt.Sprintf("spec.phoneNumber is immutable and the cluster's object has %s; delete it first (its original routing is restored)", cluster.Spec.PhoneNumber)
	case cluster.Spec.AccountRef.Name != f.Spec.AccountRef.Name:
		return fmt.Sprintf("spec.accountRef is immutable and the cluster's object names TwilioAccount %q; delete it first (its original routing is restored)", cluster.Spec.AccountRef.Name)
	}
	return ""
}

// decide works out what the operator would do to one object, in the order
// the operator checks (see controllers.TwilioPhoneNumberReconciler).
func (p *planner) decide(ctx context.Context, it *planned) {
	obj := it.obj
	set := func(action, format string, args ...any) { it.action, it.detail = action, fmt.Sprintf(format, args...) }
	if it.invalid != "" {
		set(actInvalid, "the API server would refuse it: %s", it.invalid)
		return
	}
	deleting := !obj.DeletionTimestamp.IsZero()
	if deleting && (!obj.HoldsOriginal() || obj.Spec.DeletionPolicy == twiliov1.DeletionPolicyOrphan) {
		set(actNoChange, "being deleted; the operator holds no original to restore, or deletionPolicy is Orphan: the number is left as it is")
		return
	}
	if !deleting {
		if owner := p.olderOwner(ctx, obj); owner != nil {
			set(actConflict, "TwilioPhoneNumber %s manages %s first (%s); this object makes no Twilio changes until that one is deleted",
				objName(owner), obj.Spec.PhoneNumber, ownsWhy(owner, obj))
			return
		}
	}
	a := p.listed(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: obj.Spec.AccountRef.Name})
	it.account = a
	switch {
	case a.err != nil:
		set(actUnknown, "%v", a.err)
		return
	case a.notReady != "":
		set(actAccountNotReady, "%s", a.notReady)
		return
	}
	n, found := a.numbers[obj.Spec.PhoneNumber]
	live := n.Routing
	switch {
	case !found && deleting:
		set(actNoChange, "being deleted; %s is no longer in Twilio account %s: there is nothing to restore it on", obj.Spec.PhoneNumber, a.obj.Spec.AccountSID)
	case !found && obj.Spec.Acquire == twiliov1.AcquirePurchase && (a.obj.Spec.Purchasing == nil || !a.obj.Spec.Purchasing.Enabled):
		set(actPurchaseRefused, "%s is not in Twilio account %s, and TwilioAccount %q does not allow purchases (spec.purchasing.enabled)", obj.Spec.PhoneNumber, a.obj.Spec.AccountSID, a.obj.Name)
	case !found && obj.Spec.Acquire == twiliov1.AcquirePurchase:
		set(actBuy, "%s is not in Twilio account %s: it will be bought (a charge), its voice routing set to %s in the purchase, if Twilio sells it and the account holds fewer than %d bought numbers",
			obj.Spec.PhoneNumber, a.obj.Spec.AccountSID, p.voice.target(), a.obj.Spec.Purchasing.MaxNumbers)
	case !found:
		set(actNumberNotFound, "%s is not an incoming phone number of Twilio account %s; set spec.acquire: Purchase to buy it", obj.Spec.PhoneNumber, a.obj.Spec.AccountSID)
	case deleting:
		p.handBack(it, live, "being deleted (deletionPolicy Restore): ")
	case !obj.RoutingEnabled():
		p.handBack(it, live, "")
	case obj.Spec.Agent == nil:
		set(actNoAgent, "spec.agent is not set, so the number is not taken over (it stays at %s); add spec.agent.url, or set voiceRouting: Disabled", describe(live))
	case agentRefused(it) != "":
		set(actAgentNotAllowed, "%s", agentRefused(it))
	case p.voice.routesToUs(live):
		detail := "already routes to " + p.voice.target() + ": no change"
		if !obj.HoldsOriginal() {
			detail += " (no original saved: OriginalUnknown; restore leaves the number as it is)"
		}
		set(actAlreadyRouted, "%s", detail)
	case live.TrunkSID != "" && !obj.Spec.AllowTrunkDetach:
		set(actTrunkAttached, "on SIP trunk %s, which takes precedence over its Voice URL; set spec.allowTrunkDetach: true to detach it (the trunk is saved and put back on restore)", live.TrunkSID)
	case p.voice.contested(obj, live.VoiceURL):
		id, _ := installMarker(live.VoiceURL)
		set(actContested, "the Voice URL %s is another install's (%s=%s); the operator does not take it over nor save it as the original", live.VoiceURL, twiliov1.VoiceURLInstallParam, id)
	default:
		if c := readyCondition(it.cluster); c != nil && c.Reason == twiliov1.ReasonWebhookUnreachable {
			set(actPreflightFailing, "the operator reports WebhookUnreachable, so it takes nothing over through this account: %s", oneLine(c.Message))
			return
		}
		set(actTakeOver, "%s", p.takeOverDetail(obj, live))
	}
}

// takeOverDetail: "live routing → ours", and what else the write changes.
func (p *planner) takeOverDetail(obj *twiliov1.TwilioPhoneNumber, live twilio.Routing) string {
	detail := describe(live) + " → " + p.voice.target()
	var notes []string
	if live.TrunkSID != "" {
		notes = append(notes, "detaches SIP trunk "+live.TrunkSID+" (allowTrunkDetach; put back on restore)")
	}
	if live.VoiceApplicationSID != "" {
		notes = append(notes, "clears TwiML application "+live.VoiceApplicationSID)
	}
	if p.voice.ours(live.VoiceURL) && live.TrunkSID == "" && live.VoiceApplicationSID == "" {
		notes = append(notes, "VoiceMethod "+live.VoiceMethod+" → POST")
	}
	switch {
	case obj.HoldsOriginal():
		notes = append(notes, "the saved original ("+describeSaved(*obj.Status.SavedRouting)+") is kept")
	case p.voice.ownEarlier(obj, live.VoiceURL) && live.TrunkSID == "" && live.VoiceApplicationSID == "":
		notes = append(notes, "the operator's own earlier URL: no original is saved")
	default:
		notes = append(notes, "the live routing is saved for restore")
	}
	return detail + " (" + strings.Join(notes, "; ") + ")"
}

func (p *planner) handBack(it *planned, live twilio.Routing, prefix string) {
	obj := it.obj
	if !obj.HoldsOriginal() {
		it.action = actNoChange
		it.detail = "voiceRouting Disabled and no original saved: the number is left as it is (" + describe(live) + ")"
		return
	}
	saved := *obj.Status.SavedRouting
	it.action = actHandBack
	if matchesSaved(live, saved) {
		it.detail = prefix + "Twilio already has the saved original (" + describeSaved(saved) + "); the saved copy is forgotten"
		return
	}
	it.detail = prefix + describe(live) + " → " + describeSaved(saved) + " (the saved original is restored, then forgotten)"
}

// agentRefused is the cluster's AgentNotAllowed verdict when it still
// applies (same generation, same agent), else "". The plugin does not know
// the webhook server's egress policy.
func agentRefused(it *planned) string {
	c := readyCondition(it.cluster)
	if c == nil || c.Reason != twiliov1.ReasonAgentNotAllowed || c.ObservedGeneration != it.cluster.Generation ||
		it.cluster.Spec.Agent == nil || it.obj.Spec.Agent == nil || it.cluster.Spec.Agent.URL != it.obj.Spec.Agent.URL {
		return ""
	}
	return "the operator reports: " + oneLine(c.Message)
}

// olderOwner returns the object that owns obj's number before it
// (twiliov1.OwnsBefore) and whose claim counts, or nil.
func (p *planner) olderOwner(ctx context.Context, obj *twiliov1.TwilioPhoneNumber) *twiliov1.TwilioPhoneNumber {
	var owner *twiliov1.TwilioPhoneNumber
	for _, other := range p.all {
		if other.Spec.PhoneNumber != obj.Spec.PhoneNumber || objName(other) == objName(obj) || !twiliov1.OwnsBefore(other, obj) {
			continue
		}
		if (owner == nil || twiliov1.OwnsBefore(other, owner)) && p.claimCounts(ctx, other) {
			owner = other
		}
	}
	return owner
}

// claimCounts reports whether a rival's claim counts, as the operator judges
// it: its account is usable and the number is in that Twilio account. An
// account the plan lists anyway answers from its list; another one from the
// cluster's record (Ready not False, status.phoneNumberSid set).
func (p *planner) claimCounts(ctx context.Context, other *twiliov1.TwilioPhoneNumber) bool {
	key := types.NamespacedName{Namespace: other.Namespace, Name: other.Spec.AccountRef.Name}
	if p.plannedAccounts[key] {
		a := p.listed(ctx, key)
		_, found := a.numbers[other.Spec.PhoneNumber]
		return a.err == nil && a.notReady == "" && found
	}
	a := p.account(ctx, key)
	return a.err == nil && a.notReady == "" && other.Status.PhoneNumberSID != ""
}

// account resolves a TwilioAccount (the file's, else the cluster's) without
// calling Twilio.
func (p *planner) account(ctx context.Context, key types.NamespacedName) *planAccount {
	if a, ok := p.accounts[key]; ok {
		return a
	}
	a := &planAccount{key: key}
	p.accounts[key] = a
	if p.files != nil {
		a.obj, a.fromFile = p.files.accounts[key], p.files.accounts[key] != nil
	}
	if a.obj == nil {
		var acct twiliov1.TwilioAccount
		if err := p.k8s.Get(ctx, key, &acct); err != nil {
			if apierrors.IsNotFound(err) {
				where := ""
				if p.files != nil {
					where = " (nor in the files)"
				}
				a.notReady = fmt.Sprintf("TwilioAccount %q does not exist in namespace %s%s", key.Name, key.Namespace, where)
			} else {
				a.err = fmt.Errorf("get TwilioAccount %s: %w", key, err)
			}
			return a
		}
		a.obj = &acct
	}
	_, secretFromFile := p.fileSecret(key.Namespace, a.obj.Spec.CredentialsSecretRef.Name)
	// The operator's verdict on the cluster's account stands unless the
	// files change the account or its Secret.
	if c := meta.FindStatusCondition(a.obj.Status.Conditions, twiliov1.ConditionReady); !a.fromFile && !secretFromFile &&
		c != nil && c.Status == metav1.ConditionFalse {
		a.notReady = fmt.Sprintf("TwilioAccount %q is not Ready (%s: %s)", key.Name, c.Reason, oneLine(c.Message))
	}
	return a
}

func (p *planner) fileSecret(ns, name string) (*corev1.Secret, bool) {
	if p.files == nil {
		return nil, false
	}
	s, ok := p.files.secrets[types.NamespacedName{Namespace: ns, Name: name}]
	return s, ok
}

// listed resolves the account and lists its numbers, once.
func (p *planner) listed(ctx context.Context, key types.NamespacedName) *planAccount {
	a := p.account(ctx, key)
	if a.listed || a.err != nil || a.notReady != "" {
		return a
	}
	a.listed = true
	conn, err := p.connector.Connect(ctx, a.obj)
	if err != nil {
		var ce *controllers.ConfigError
		isConfig := errors.As(err, &ce)
		switch {
		case isConfig && ce.Reason == twiliov1.ReasonAPIURLNotAllowed:
			a.err = fmt.Errorf("TwilioAccount %s: spec.apiURL %q is not allowed: kubectl twilio sends credentials there only when --allowed-api-urls (or $KUBECTL_TWILIO_ALLOWED_API_URLS) names it", key, a.obj.Spec.APIURL)
		case isConfig:
			a.notReady = fmt.Sprintf("TwilioAccount %q: %s", key.Name, ce.Message)
		default:
			a.err = fmt.Errorf("credentials of TwilioAccount %s: %w", key, err)
		}
		return a
	}
	nums, err := conn.Client.ListNumbers(ctx)
	switch {
	case twilio.IsAuth(err):
		a.notReady = fmt.Sprintf("Twilio refused the credentials of TwilioAccount %q: %v", key.Name, err)
		return a
	case err != nil:
		a.err = fmt.Errorf("list the numbers of Twilio account %s: %w", a.obj.Spec.AccountSID, err)
		return a
	}
	a.numbers = make(map[string]twilio.Number, len(nums))
	for _, n := range nums {
		a.numbers[n.PhoneNumber] = n
	}
	return a
}

// preflight runs the operator's preflight once per account that has numbers
// to take over, through one of them (preferably one the cluster already
// has, which the webhook server may know), and marks them all when it fails.
func (p *planner) preflight(ctx context.Context, items []*planned) {
	var order []*planAccount
	via := map[*planAccount]*planned{}
	for _, it := range items {
		if it.action != actTakeOver {
			continue
		}
		if cur, ok := via[it.account]; !ok {
			order = append(order, it.account)
			via[it.account] = it
		} else if cur.cluster == nil && it.cluster != nil {
			via[it.account] = it
		}
	}
	for _, a := range order {
		it := via[a]
		var token string
		var s corev1.Secret
		key := types.NamespacedName{Namespace: a.key.Namespace, Name: a.obj.Spec.CredentialsSecretRef.Name}
		if err := p.secrets.Get(ctx, key, &s); err != nil {
			a.preflightErr = fmt.Errorf("read the auth token to sign it: %w", err)
		} else {
			token = string(s.Data[controllers.SecretKeyAuthToken])
			a.preflightErr = preflight.Check(ctx, nil, preflight.Request{
				VoiceURL: p.voice.url, AccountSID: a.obj.Spec.AccountSID, AuthToken: token,
				Number: it.obj.Spec.PhoneNumber, Object: objName(it.obj),
			})
		}
		if a.preflightErr == nil {
			continue
		}
		msg := oneLine(a.preflightErr.Error())
		if f, ok := preflight.AsFailure(a.preflightErr); ok && f.Pending && it.cluster == nil {
			msg += " (expected until the objects are applied and the webhook server has caught up)"
		}
		for _, other := range items {
			if other.account == a && other.action == actTakeOver {
				other.action = actPreflightFailing
				other.detail = fmt.Sprintf("the preflight through %s failed, so the operator takes nothing over through this account: %s", objName(it.obj), msg)
			}
		}
	}
}

func printPlan(out io.Writer, items []*planned, voice voiceTarget) error {
	if _, err := fmt.Fprintf(out, "Voice URL: %s (%s)\n\n", voice.target(), voice.source); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NAMESPACE/NAME\tNUMBER\tACTION\tDETAIL")
	count := map[string]int{}
	for _, it := range items {
		count[it.action]++
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", objName(it.obj), orDash(it.obj.Spec.PhoneNumber), it.action, oneLine(it.detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, a := range actionOrder {
		if count[a] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[a], a))
		}
	}
	if _, err := fmt.Fprintf(out, "\nPlan: %s (%d TwilioPhoneNumbers; nothing was changed)\n", strings.Join(parts, ", "), len(items)); err != nil {
		return err
	}
	if count[actUnknown] > 0 {
		return fmt.Errorf("the plan is incomplete: %d of %d TwilioPhoneNumbers could not be planned (ACTION Unknown)", count[actUnknown], len(items))
	}
	return nil
}

func objName(o *twiliov1.TwilioPhoneNumber) string { return o.Namespace + "/" + o.Name }

// ownsWhy says why owner comes before obj (twiliov1.OwnsBefore).
func ownsWhy(owner, obj *twiliov1.TwilioPhoneNumber) string {
	switch {
	case owner.HoldsOriginal():
		return "it holds the number's saved original"
	case !owner.CreationTimestamp.Equal(&obj.CreationTimestamp):
		return "it is older"
	default:
		return "created in the same second, it sorts first"
	}
}

func readyCondition(obj *twiliov1.TwilioPhoneNumber) *metav1.Condition {
	if obj == nil {
		return nil
	}
	return meta.FindStatusCondition(obj.Status.Conditions, twiliov1.ConditionReady)
}

func describeSaved(s twiliov1.SavedRouting) string {
	return describe(twilio.Routing{VoiceURL: s.VoiceURL, VoiceApplicationSID: s.VoiceApplicationSID, TrunkSID: s.TrunkSID})
}

// matchesSaved reports whether the live routing already equals the saved
// one, as the operator compares them before a restore.
func matchesSaved(r twilio.Routing, s twiliov1.SavedRouting) bool {
	eqMethod := func(live, saved string) bool { return saved == "" || strings.EqualFold(live, saved) }
	return r.VoiceURL == s.VoiceURL && r.VoiceFallbackURL == s.VoiceFallbackURL &&
		r.StatusCallback == s.StatusCallback && r.VoiceApplicationSID == s.VoiceApplicationSID &&
		r.TrunkSID == s.TrunkSID && eqMethod(r.VoiceMethod, s.VoiceMethod) &&
		eqMethod(r.VoiceFallbackMethod, s.VoiceFallbackMethod) && eqMethod(r.StatusCallbackMethod, s.StatusCallbackMethod)
}
