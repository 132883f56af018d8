package controllers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/credentials"
)

// credentialsPublisher keeps the webhook server's credentials Secret equal to
// the auth tokens of the verified TwilioAccounts that own their account SID.
// The webhook server reads that one Secret, so it needs no read access to
// tenants' Secrets and never trusts a token the operator did not verify.
type credentialsPublisher struct {
	client    client.Client
	apiReader client.Reader
	connector *Connector
	secret    types.NamespacedName
	shared    sharedNamespaces
	trigger   chan struct{}
	// resync republishes even without a trigger (a lost Secret is recreated).
	resync time.Duration

	// last is what this process last found or wrote in the Secret; a
	// triggered publish that would write the same sends nothing. Only the
	// first publish and each resync read the Secret from the API server.
	last   []byte
	exists bool // whether the Secret existed when last seen
	seen   bool // whether last and exists are known
}

// Trigger asks for a publish soon; bursts coalesce.
func (p *credentialsPublisher) Trigger() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Start implements manager.Runnable: it publishes until ctx ends.
func (p *credentialsPublisher) Start(ctx context.Context) error {
	t := time.NewTicker(p.resync)
	defer t.Stop()
	reread := true
	for {
		if err := p.publish(ctx, reread); err != nil && ctx.Err() == nil {
			log.FromContext(ctx).Error(err, "Publish webhook credentials", "secret", p.secret.String())
			p.seen = false // read it again next time
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.trigger:
			reread = !p.seen
			// Let a burst of account reconciles settle into one write.
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
		case <-t.C:
			reread = true
		}
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (p *credentialsPublisher) NeedLeaderElection() bool { return true }

// publish writes the credentials when they changed. reread reads the Secret
// from the API server first; otherwise what this process last saw counts.
func (p *credentialsPublisher) publish(ctx context.Context, reread bool) error {
	var accounts twiliov1.TwilioAccountList
	if err := p.client.List(ctx, &accounts); err != nil {
		return fmt.Errorf("list TwilioAccounts: %w", err)
	}
	current := &corev1.Secret{}
	if reread || !p.seen {
		err := p.apiReader.Get(ctx, p.secret, current)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("get Secret %s: %w", p.secret, err)
		}
		p.exists, p.last, p.seen = err == nil, current.Data[credentials.Key], true
		reread = true
	}
	exists := p.exists
	before, _ := credentials.Parse(p.last)
	previous := map[types.NamespacedName]credentials.Account{}
	for _, a := range before.Accounts {
		previous[types.NamespacedName{Namespace: a.Namespace, Name: a.Name}] = a
	}

	var out credentials.Published
	for _, acct := range sidOwners(accounts.Items, p.shared) {
		key := types.NamespacedName{Namespace: acct.Namespace, Name: acct.Name}
		token, ok := p.connector.VerifiedToken(key)
		if !ok {
			// Verified before this process started: keep what was published
			// for it until this process has verified it again.
			prev, had := previous[key]
			if !had || prev.AccountSID != acct.Spec.AccountSID {
				continue
			}
			token = prev.AuthToken
		}
		published := credentials.Account{Namespace: acct.Namespace, Name: acct.Name, AccountSID: acct.Spec.AccountSID, AuthToken: token}
		if e := acct.Spec.Events; e != nil && e.Sink != nil {
			published.EventSinkURL = e.Sink.URL
		}
		out.Accounts = append(out.Accounts, published)
	}
	slices.SortFunc(out.Accounts, func(a, b credentials.Account) int {
		return cmp.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	headers, err := p.publishedAgentHeaders(ctx, out.Accounts)
	if err != nil {
		return err
	}
	out.AgentHeaders = headers
	data, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if exists && bytes.Equal(p.last, data) {
		return nil
	}
	if exists && !reread {
		// Changed since last seen: write over the server's current copy.
		if err := p.apiReader.Get(ctx, p.secret, current); err != nil {
			return fmt.Errorf("get Secret %s: %w", p.secret, err)
		}
	}
	if !exists {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.secret.Namespace, Name: p.secret.Name,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "twilio-voice-operator"}},
			Data: map[string][]byte{credentials.Key: data},
		}
		if err := p.client.Create(ctx, s); err != nil {
			return fmt.Errorf("create Secret %s: %w", p.secret, err)
		}
	} else {
		base := current.DeepCopy()
		if current.Data == nil {
			current.Data = map[string][]byte{}
		}
		current.Data[credentials.Key] = data
		if err := p.client.Patch(ctx, current, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("update Secret %s: %w", p.secret, err)
		}
	}
	p.last, p.exists = data, true
	log.FromContext(ctx).Info("Published webhook credentials", "secret", p.secret.String(), "accounts", len(out.Accounts))
	return nil
}

// sidOwners returns the accounts whose tokens the webhook server may use: the
// operator verified them (Ready=True, Verified, for their current
// generation), and no older verified account uses the same account SID,
// unless both are in namespaces allowed to share SIDs.
func sidOwners(items []twiliov1.TwilioAccount, shared sharedNamespaces) []*twiliov1.TwilioAccount {
	var verified []*twiliov1.TwilioAccount
	for i := range items {
		a := &items[i]
		if a.DeletionTimestamp.IsZero() && accountVerified(a) {
			verified = append(verified, a)
		}
	}
	var out []*twiliov1.TwilioAccount
	for _, a := range verified {
		if olderSIDOwner(a, true, verified, shared) == nil {
			out = append(out, a)
		}
	}
	return out
}

// olderSIDOwner returns a verified account among rivals that holds a's SID
// ahead of a, or nil. The older one wins. Creation times have a resolution
// of one second: within the same second an account that already owned the
// SID (incumbent) keeps it, so a newcomer cannot take a SID over by racing
// its owner's creation; between two incumbents namespace/name decides.
func olderSIDOwner(a *twiliov1.TwilioAccount, incumbent bool, rivals []*twiliov1.TwilioAccount, shared sharedNamespaces) *twiliov1.TwilioAccount {
	for _, r := range rivals {
		if r.UID == a.UID || r.Spec.AccountSID != a.Spec.AccountSID || shared.share(r.Namespace, a.Namespace) {
			continue
		}
		if !r.CreationTimestamp.Equal(&a.CreationTimestamp) {
			if r.CreationTimestamp.Before(&a.CreationTimestamp) {
				return r
			}
			continue
		}
		if !incumbent || cmp.Compare(r.Namespace+"/"+r.Name, a.Namespace+"/"+a.Name) < 0 {
			return r
		}
	}
	return nil
}

// accountVerified reports whether the operator verified the account's
// current spec and credentials.
func accountVerified(a *twiliov1.TwilioAccount) bool {
	return a.Status.ObservedGeneration == a.Generation &&
		isConditionReason(a.Status.Conditions, twiliov1.ConditionReady, metav1.ConditionTrue, twiliov1.ReasonVerified)
}

// sharedNamespaces are the namespaces whose TwilioAccounts may use the same
// account SID (the manager's --account-sid-sharing-namespaces): names or
// path.Match patterns such as team-* or *.
type sharedNamespaces []string

func (s sharedNamespaces) share(a, b string) bool { return s.match(a) && s.match(b) }

func (s sharedNamespaces) match(ns string) bool {
	for _, pattern := range s {
		if ok, _ := path.Match(pattern, ns); ok {
			return true
		}
	}
	return false
}

// GuardKeySecretKey is the key of the guard key in its Secret.
const GuardKeySecretKey = "key"

// StreamTokenSecretKey is the key of the stream-token keys in their Secret
// (the webhook server's --stream-token-secret reads it).
const StreamTokenSecretKey = "key"

// LoadOrCreateGuardKey returns the operator's guard key from the Secret at
// key, creating the Secret with a new random key when it does not exist. The
// key must outlive the manager: an annotation signed under a lost key proves
// nothing, so after a loss the annotations are rebuilt from status.
func LoadOrCreateGuardKey(ctx context.Context, c client.Client, key types.NamespacedName) ([]byte, error) {
	return loadOrCreateKey(ctx, c, key, GuardKeySecretKey, func(k []byte) []byte { return k })
}

// EnsureStreamTokenSecret creates the webhook server's stream-token Secret at
// key when it does not exist: one text key of 64 base64 characters (the
// format the webhook server reads, one key per line). An existing Secret is
// never changed, so a rotation (README) is the owner's, and the key survives
// every render of the chart and every restart.
func EnsureStreamTokenSecret(ctx context.Context, c client.Client, key types.NamespacedName) error {
	_, err := loadOrCreateKey(ctx, c, key, StreamTokenSecretKey, func(k []byte) []byte {
		return []byte(base64.StdEncoding.EncodeToString(k))
	})
	return err
}

// loadOrCreateKey returns dataKey of the Secret at key, creating the Secret
// from 48 random bytes (shaped by encode) when it does not exist.
func loadOrCreateKey(ctx context.Context, c client.Client, key types.NamespacedName, dataKey string, encode func([]byte) []byte) ([]byte, error) {
	for range 2 {
		s := &corev1.Secret{}
		err := c.Get(ctx, key, s)
		if err == nil {
			if k := s.Data[dataKey]; len(k) >= 32 {
				return k, nil
			}
			return nil, fmt.Errorf("secret %s: key %q must hold at least 32 bytes", key, dataKey)
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("get Secret %s: %w", key, err)
		}
		raw := make([]byte, 48)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		k := encode(raw)
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "twilio-voice-operator"}},
			Data: map[string][]byte{dataKey: k},
		}
		err = c.Create(ctx, s)
		if err == nil {
			return k, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create Secret %s: %w", key, err)
		}
	}
	return nil, fmt.Errorf("secret %s: created and deleted concurrently; try again", key)
}
